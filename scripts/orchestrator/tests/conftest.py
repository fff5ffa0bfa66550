"""Shared pytest fixtures: the test world (fake GitHub, scripted model, real git)."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.orchestrator.sandbox.git_world import GitWorld, make_world


@pytest.fixture
def git_world(tmp_path: Path) -> GitWorld:
    """A bare origin with the sample project on `main`, and the daemon's clone of it."""
    return make_world(tmp_path / "world")
