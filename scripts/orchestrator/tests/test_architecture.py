"""The import rules of docs/architecture.md: kept, able to fail; the tests stay out of the wheel."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]  # tests -> orchestrator -> scripts -> the repository
PYPROJECT = ROOT / "pyproject.toml"
PACKAGE = "scripts.orchestrator"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
TIMEOUT = 120  # seconds; a run takes well under one

# One import per contract that only that contract forbids: the contract's id, the module the line
# is written into (in an empty copy of the package), the line, and the module it imports (a
# leading dot: one of the package's).
BREAKS = [
    ("layers", "state", "from . import daemon", ".daemon"),
    ("core-alone", "core.models", "from ..fakes import git_world", ".fakes.git_world"),
    ("core-no-io-libraries", "core.retry", "import httpx", "httpx"),
    ("core-no-io-libraries", "core.text", "import subprocess", "subprocess"),
    ("workflows-adapters", "workflows.merge", "from .. import state", ".state"),
    ("daemon-imports", "daemon", "from .clock import SystemClock", ".clock"),
    ("fakes-for-tests", "main", "from .fakes import git_world", ".fakes.git_world"),
    ("nothing-imports-tests", "fakes.git_world", "from ..tests import replay", ".tests.replay"),
]


def _pyproject() -> dict[str, Any]:
    # tomllib is new in Python 3.11; on 3.10 import-linter depends on tomli, the same parser.
    toml = importlib.import_module("tomllib" if sys.version_info >= (3, 11) else "tomli")
    with PYPROJECT.open("rb") as f:
        data: dict[str, Any] = toml.load(f)
    return data


def _contracts() -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in _pyproject()["tool"]["importlinter"]["contracts"]}


def _lint_imports(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` on the package and the pyproject.toml in `cwd`."""
    if not LINT_IMPORTS.exists():
        pytest.fail(f'{LINT_IMPORTS} is missing: pip install -e ".[dev]" installs import-linter')
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        # Wide lines: import-linter wraps its report at the terminal's width.
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
        check=False,
    )


def _report(result: subprocess.CompletedProcess[str]) -> str:
    return f"lint-imports exited {result.returncode}\n{result.stdout}\n{result.stderr}"


def test_the_code_keeps_every_import_contract() -> None:
    result = _lint_imports(cwd=ROOT)
    contracts = len(_contracts())
    assert result.returncode == 0, _report(result)
    assert f"Contracts: {contracts} kept, 0 broken." in result.stdout, _report(result)


def _skeleton(where: Path) -> Path:
    """Every module of the package, empty, and the contracts: the layout without an import."""
    shutil.copy(PYPROJECT, where)
    for source in (ROOT / "scripts").rglob("*.py"):
        if "__pycache__" in source.parts:
            continue
        copy = where / source.relative_to(ROOT)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.touch()
    return where / "scripts" / "orchestrator"


def test_an_empty_skeleton_keeps_every_contract(tmp_path: Path) -> None:
    # The baseline of the next test: its breaks come from the one import it adds.
    _skeleton(tmp_path)
    result = _lint_imports(cwd=tmp_path)
    assert result.returncode == 0, _report(result)


@pytest.mark.parametrize(("contract", "importer", "line", "imported"), BREAKS)
def test_each_contract_fails_on_a_forbidden_import(
    tmp_path: Path, contract: str, importer: str, line: str, imported: str
) -> None:
    # lint-imports puts its working directory first on sys.path: the skeleton is what it reads.
    package = _skeleton(tmp_path)
    package.joinpath(*importer.split(".")).with_suffix(".py").write_text(line + "\n")
    result = _lint_imports("--contract", contract, cwd=tmp_path)
    assert result.returncode == 1, _report(result)
    assert "Contracts: 0 kept, 1 broken." in result.stdout, _report(result)
    imported = PACKAGE + imported if imported.startswith(".") else imported
    assert f"{PACKAGE}.{importer} -> {imported} (l.1)" in result.stdout, _report(result)


def test_every_contract_has_a_forbidden_import_that_breaks_it() -> None:
    assert {contract for contract, *_ in BREAKS} == set(_contracts())


def test_the_contracts_name_every_adapter() -> None:
    """A new adapter placed in the layers is forbidden to the workflows and the daemon too."""
    contracts = _contracts()
    layers = [layer.replace("|", ":").split(":") for layer in contracts["layers"]["layers"]]
    names = [{name.strip() for name in layer} for layer in layers]
    assert len(names) == 7, names
    top, wiring, start, middle, adapters_and_config, bottom, lowest = names
    assert wiring == {"wiring"}
    assert (middle, bottom, lowest) == ({"daemon", "workflows"}, {"ports"}, {"core"})
    assert top == {"main", "demo", "dry_run", "fleet"}
    assert start == {"startup", "preflight", "preflight_repos", "preflight_github",
                     "preflight_findings", "status", "serving", "fleet_serving"}  # fmt: skip
    assert contracts["layers"]["containers"] == [PACKAGE]
    assert "|" in contracts["layers"]["layers"][3], "daemon and workflows must be independent"
    # The settings and what they are made of; the workflows read the settings.
    adapters = adapters_and_config - {"config", "config_words", "config_machine", "guidelines"}
    assert {"github_watcher", "worktree_manager", "claude_runner", "checks", "state"} <= adapters

    def forbidden(contract: str) -> set[str]:
        return {m.removeprefix(PACKAGE + ".") for m in contracts[contract]["forbidden_modules"]}

    assert forbidden("workflows-adapters") == adapters | {"daemon"} | top | wiring | start
    assert forbidden("daemon-imports") == (
        (adapters_and_config - {"logs"}) | {"workflows"} | top | wiring | start
    )
    assert contracts["fakes-for-tests"]["protected_modules"] == [f"{PACKAGE}.fakes"]
    assert contracts["fakes-for-tests"]["allowed_importers"] == [
        f"{PACKAGE}.tests",
        f"{PACKAGE}.demo",
    ]
    assert contracts["core-alone"]["forbidden_modules"] == [f"{PACKAGE}.*"]
    io = set(contracts["core-no-io-libraries"]["forbidden_modules"])
    assert {"githubkit", "httpx", "claude_agent_sdk", "anyio", "hishel", "subprocess"} <= io
    assert "pydantic" not in io
    assert _pyproject()["tool"]["importlinter"]["include_external_packages"] is True


def test_the_wheel_leaves_the_tests_out() -> None:
    setuptools = _pyproject()["tool"]["setuptools"]
    assert setuptools["include-package-data"] is False
    exclude = setuptools["packages"]["find"]["exclude"]
    tests = ROOT / "scripts" / "orchestrator" / "tests"
    # Package discovery in pyproject.toml finds namespace packages too: every folder counts.
    folders = [tests, *(p for p in tests.rglob("*") if p.is_dir() and p.name != "__pycache__")]
    for folder in folders:
        name = ".".join(folder.relative_to(ROOT).parts)
        assert any(fnmatchcase(name, pattern) for pattern in exclude), f"{name} ships"
    for package, patterns in setuptools["package-data"].items():
        for pattern in patterns:
            assert "tests" not in f"{package}.{pattern}".replace("/", "."), (package, pattern)
