"""Shared pytest fixtures: the test world (fake GitHub, scripted model, git) and a clean env."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from scripts.orchestrator.config import Settings
from scripts.orchestrator.sandbox.git_world import GitWorld, git, make_world

SETTINGS_VARS = tuple(name.upper() for name in Settings.model_fields)


@pytest.fixture
def git_world(tmp_path: Path) -> GitWorld:
    """A bare origin with the sample project on `main`, and the daemon's clone of it."""
    return make_world(tmp_path / "world")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No orchestrator variables, no `gh` on PATH, and a git repository as the current dir."""
    for var in (*SETTINGS_VARS, "GH_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("git", "sh", "env"):
        found = shutil.which(tool)
        assert found, f"{tool} is needed by the tests"
        os.symlink(found, bin_dir / tool)
    monkeypatch.setenv("PATH", str(bin_dir))
    project = tmp_path / "project"
    project.mkdir()
    git(project, "init", "--quiet")
    monkeypatch.chdir(project)
    return project


from .fixtures_github import *  # noqa: E402, F403
from .fixtures_model import *  # noqa: E402, F403
from .fixtures_world import *  # noqa: E402, F403
