"""The long tail through the real server: a manifest-less script's import that only a project outside the ranking
provides is installed after the server checks a local PyPI-like index on 127.0.0.1, and a week-old name is refused
and installs nothing (slopsquatting)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloche import Client
from cloche.ecosystems.python.importmap import ImportMap
from conftest import ServerProcess, running_server

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ecosystems" / "python"))
from _pyindex import LocalPypi
from _pywheels import build_wheel

from tests_support import run_file

# Real names from the shipped long-tail index (projects outside the ranking that pigar lists); the local index
# decides how old they are.
OLD, FRESH = "pywebcopy", "win10toast"


@pytest.fixture(scope="module")
def cloche() -> Iterator[Client]:
    data = ImportMap.load()
    assert data.long_tail is not None
    assert data.long_tail.candidates(OLD)[0] == OLD and data.long_tail.candidates(FRESH)[0] == FRESH
    index = LocalPypi()
    with index.running():

        def place(root: Path) -> dict[str, str]:
            folder = root / "wheels"
            folder.mkdir()
            old = build_wheel(folder, OLD, "7.1", {f"{OLD}/__init__.py": "WHO = 'old and verified'\n"})
            fresh = build_wheel(folder, FRESH, "0.9", {f"{FRESH}/__init__.py": "WHO = 'squatter'\n"})
            index.add(OLD, "7.1", 2000, old)
            index.add(FRESH, "0.9", 7, fresh)
            return {"CLOCHE_PYTHON_WHEEL_DIR": str(folder), "CLOCHE_PYPI_JSON_URL": index.json_url}

        srv: ServerProcess
        with running_server(place) as srv, srv.client() as client:
            yield client


def test_long_tail_project_is_verified_then_installed(cloche: Client) -> None:
    with cloche.create() as box:
        result = run_file(box, "main.py", f"import {OLD}\nprint({OLD}.WHO)\n")
        assert result.stdout == "old and verified\n"
        assert result.install is not None
        [resolved] = result.install.resolved
        assert (resolved.module, resolved.package, resolved.source) == (OLD, OLD, "long tail")
        assert resolved.reason is not None and "first release" in resolved.reason
        assert [p.name for p in result.install.installed] == [OLD]


def test_week_old_name_is_refused_and_installs_nothing(cloche: Client) -> None:
    with cloche.create() as box:
        result = run_file(box, "main.py", f"import {FRESH}\n", status="failed")
        assert "ModuleNotFoundError" in result.stderr
        [unresolved] = result.unresolved_imports
        assert unresolved.module == FRESH
        assert (
            unresolved.hint is not None
            and "7 days ago" in unresolved.hint
            and "nothing was installed" in unresolved.hint
        )
        assert result.install is None or (result.install.installed == [] and result.install.requested == [])


def test_invented_name_stays_unresolved(cloche: Client) -> None:
    with cloche.create() as box:
        box.write("main.py", "import zzqx_not_real_42\n")
        result = box.exec(filename="main.py")
        assert [u.module for u in result.unresolved_imports] == ["zzqx_not_real_42"]
        assert result.install is None or result.install.installed == []
