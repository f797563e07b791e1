"""Golden detection cases for Node, Go and Java: ``test_detect_golden.py`` runs every case of each.

Each ``<language>/fixtures/<case>/workspace`` is detected and compared with ``fixtures/<case>/expected.json`` (the
detection's ``to_dict()``, or the error). ``case.json`` may set ``entry``. Rewrite expectations after an
intended change with ``UPDATE_GOLDEN=1 pytest tests/ecosystems/<language>`` and review the diff.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cloche.errors import ClocheError

UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def cases(fixtures: Path) -> list[str]:
    return sorted(p.name for p in fixtures.iterdir() if (p / "workspace").is_dir())


def check(fixtures: Path, name: str, tmp_path: Path, detect: Callable[[Path, str], Any], default_entry: str) -> None:
    case = fixtures / name
    options = json.loads((case / "case.json").read_text()) if (case / "case.json").exists() else {}
    # A private copy, so nothing a run leaves behind reaches the fixture.
    workspace = tmp_path / "workspace"
    shutil.copytree(case / "workspace", workspace)
    try:
        got = detect(workspace, options.get("entry", default_entry)).to_dict()
    except ClocheError as e:
        got = e.to_dict()
    expected_file = case / "expected.json"
    if UPDATE:
        expected_file.write_text(json.dumps(got, indent=2, sort_keys=True) + "\n")
    # A missing expectation fails: writing it here would make a new case pass whatever it detected.
    assert expected_file.exists(), f"{expected_file} is missing; write it with UPDATE_GOLDEN=1 and review it"
    assert got == json.loads(expected_file.read_text())
