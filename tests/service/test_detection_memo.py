"""The detection memo: a small unchanged workspace is answered on the event loop, anything else is detected."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cloche.ecosystems.base import Detection
from cloche.ecosystems.python.ecosystem import PythonEcosystem
from cloche.service.detection_memo import SMALL_WORKSPACE, DetectionMemo


class CountingPython(PythonEcosystem):
    """The real Python detection, counted."""

    calls = 0

    def detect(self, workspace: Path, entry: str) -> Detection:
        self.calls += 1
        return super().detect(workspace, entry)


def test_small_unchanged_workspaces_are_answered_at_once_and_changes_are_detected(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("import json\nprint('hi')\n")
    python, memo = CountingPython(), DetectionMemo()
    assert memo.known("sb", python, tmp_path, "main.py") is None  # never detected: no answer at once
    first = asyncio.run(memo.find("sb", python, tmp_path, "main.py"))
    assert python.calls == 1
    assert memo.known("sb", python, tmp_path, "main.py") == first
    assert asyncio.run(memo.find("sb", python, tmp_path, "main.py")) == first and python.calls == 1
    (tmp_path / "main.py").write_text("import json\nimport csv\nprint('changed')\n")
    assert memo.known("sb", python, tmp_path, "main.py") is None  # changed: detected again
    asyncio.run(memo.find("sb", python, tmp_path, "main.py"))
    assert python.calls == 2
    assert memo.known("other", python, tmp_path, "main.py") is None  # per sandbox


def test_large_workspaces_are_never_walked_on_the_caller_s_thread(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("print('hi')\n")
    for n in range(SMALL_WORKSPACE + 1):
        (tmp_path / f"data{n}.txt").write_text("x")
    python, memo = CountingPython(), DetectionMemo()
    asyncio.run(memo.find("sb", python, tmp_path, "main.py"))
    assert memo.known("sb", python, tmp_path, "main.py") is None
    asyncio.run(memo.find("sb", python, tmp_path, "main.py"))
    assert python.calls == 1  # still the memo, from the worker thread
