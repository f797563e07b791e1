"""Golden detection cases: each ``fixtures/<case>/workspace`` is detected and compared with
``fixtures/<case>/expected.json`` (the detection minus fingerprint and inputs, or the error).

``case.json`` may set ``entry`` (default ``main.py``) and ``allow_unknown``. Rewrite the
expectations after an intended change with ``UPDATE_GOLDEN=1 pytest tests/ecosystems/python``,
then review the diff: the import map is shipped data, so a regenerated map can move cases too.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from cloche.ecosystems.python.detect import detect
from cloche.ecosystems.python.resolve import Resolver
from cloche.ecosystems.python.scan import host_stdlib
from cloche.errors import ClocheError

FIXTURES = Path(__file__).parent / "fixtures"
CASES = sorted(p.name for p in FIXTURES.iterdir() if (p / "workspace").is_dir())
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def run_case(case: Path, workspace: Path) -> dict[str, Any]:
    options = json.loads((case / "case.json").read_text()) if (case / "case.json").exists() else {}
    try:
        found = detect(
            workspace,
            options.get("entry", "main.py"),
            resolver=Resolver(),
            stdlib=host_stdlib(),
            allow_unknown=bool(options.get("allow_unknown", False)),
        )
    except ClocheError as e:
        return e.to_dict()
    result = found.to_dict()
    del result["fingerprint"], result["inputs"]
    return result


def test_every_case_has_an_expectation() -> None:
    assert len(CASES) >= 12
    if not UPDATE:
        missing = [c for c in CASES if not (FIXTURES / c / "expected.json").exists()]
        assert not missing, f"run with UPDATE_GOLDEN=1 to create: {missing}"


@pytest.mark.parametrize("name", CASES)
def test_golden(name: str, tmp_path: Path) -> None:
    case = FIXTURES / name
    # A private copy, so nothing a test run leaves behind (caches, stray files) reaches the fixture.
    workspace = tmp_path / "workspace"
    shutil.copytree(case / "workspace", workspace)
    got = run_case(case, workspace)
    expected_file = case / "expected.json"
    if UPDATE:
        expected_file.write_text(json.dumps(got, indent=2, sort_keys=True) + "\n")
        return
    assert got == json.loads(expected_file.read_text())
