"""Runs inside the install jail with the environment's interpreter: does each import of an entry import?

Standard library only. Input: a JSON list of ``{"module": "a.b", "names": ["x", "y"]}`` (``from a.b import x,
y``). Output: one line per import, ``MARK`` then JSON, flushed as it is known (so an import that kills the
process still leaves the answers before it; whatever the imported packages print is not marked)::

    {"module": "a.b", "ok": false, "kind": "missing_module", "missing": "c", "names": [], "error": "..."}

``kind``: "ok"; "missing_module" (ModuleNotFoundError; ``missing`` is the module Python could not find);
"missing_names" (the module imports but lacks ``names``); "import_error" (another ImportError); "raised" (the
import raised something else, or took too long: an environment problem, not an install problem, so it
counts as importable). ``display``: true when the import failed for want of an X display and then imported
under a virtual one (``display_jail.py``, beside this file, started once): runs of the environment need one.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import signal
import sys
from types import FrameType, ModuleType
from typing import Any

PER_IMPORT_SECONDS = 30
MARK = "=====cloche-import:"
# What python-xlib, tkinter, GTK and the like say when $DISPLAY is unset or unreachable.
DISPLAY_ERROR = re.compile(
    r"DISPLAY|DisplayNameError|DisplayConnectionError|cannot connect to X|no display|couldn't connect to display"
    r"|Can't connect to display|failed to acquire X connection",
    re.IGNORECASE,
)
_display: list[Any] = []  # the Xvfb started for this check, once


class _Slow(Exception):
    pass


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise _Slow()


def _missing_names(module: ModuleType, names: list[str]) -> list[str]:
    """``from module import name`` semantics: an attribute, else a submodule of that name."""
    missing = []
    for name in names:
        if name == "*" or hasattr(module, name):
            continue
        try:
            importlib.import_module(module.__name__ + "." + name)
        except ImportError:
            missing.append(name)
    return missing


def check(module_name: str, names: list[str]) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "module": module_name,
        "ok": True,
        "kind": "ok",
        "missing": None,
        "names": [],
        "error": "",
    }
    signal.alarm(PER_IMPORT_SECONDS)
    try:
        module = importlib.import_module(module_name)
        missing = _missing_names(module, names)
        if missing:
            answer.update(ok=False, kind="missing_names", names=missing)
            answer["error"] = f"cannot import name {', '.join(missing)} from {module_name!r}"
    except ModuleNotFoundError as e:
        answer.update(ok=False, kind="missing_module", missing=e.name, error=f"{type(e).__name__}: {e}")
    except ImportError as e:
        answer.update(ok=False, kind="import_error", error=f"{type(e).__name__}: {e}")
    except _Slow:
        answer.update(kind="raised", error=f"the import took longer than {PER_IMPORT_SECONDS} s")
    except BaseException as e:  # SystemExit, a missing display, a network call at import time, ...
        answer.update(kind="raised", error=f"{type(e).__name__}: {e}")
    finally:
        signal.alarm(0)
    return answer


def _start_display() -> bool:
    """A virtual display for the rest of the check; False when there is none to be had (Xvfb missing)."""
    if not _display:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "display_jail.py")
        spec = importlib.util.spec_from_file_location("cloche_display_jail", path)
        if spec is None or spec.loader is None or "DISPLAY" in os.environ:
            return False
        launcher = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(launcher)
        try:
            _display.append(launcher.start())
        except launcher.DisplayUnavailable:
            return False
    return True


def check_with_display(module_name: str, names: list[str]) -> dict[str, Any]:
    """``check``, and once more under a virtual display when the import wanted one."""
    answer = check(module_name, names)
    if answer["kind"] in ("raised", "import_error") and DISPLAY_ERROR.search(answer["error"]) and _start_display():
        again = check(module_name, names)
        if not DISPLAY_ERROR.search(again["error"]):
            return {**again, "display": True}
    return answer


def main() -> None:
    with open(sys.argv[1]) as f:
        wanted = json.load(f)
    signal.signal(signal.SIGALRM, _alarm)
    out = sys.stdout  # taken before any import can replace it
    for item in wanted:
        answer = check_with_display(item["module"], item.get("names") or [])
        answer["error"] = answer["error"][:2000]
        out.write(MARK + json.dumps(answer) + "\n")
        out.flush()
    for server in _display:
        server.kill()


if __name__ == "__main__":
    main()
