"""Scanned imports whose project runs only on another operating system (``win32api`` -> pywin32, ``win10toast``):
reported as unresolved with that reason, and left out of the install, instead of an install that fails.

The long-tail layer refuses such a project before anything is asked of the installer. A project the shipped data
vouches for (the map, a namespace rule, a ranked name) is not asked about up front: that would cost a PyPI request
per mapped import on a first exec. Instead the facts are read (host side, cached: resolve/pypi_json.py) only when
the lock needs them: when locking the scanned needs fails, or succeeds only by allowing source archives (a
Windows-only dependency such as pypiwin32 is an sdist). Each scanned project whose PyPI classifiers, or whose
current release's files, say it runs only on Windows or only on macOS is dropped from the requirements, and the
needs are locked again without it. The lock records each such import in a comment line, so the exec's
``unresolved_imports`` can list it with the reason as its hint, and the import check after install skips it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from packaging.utils import canonicalize_name

from cloche.ecosystems.python.needs import ImportNeed
from cloche.ecosystems.python.resolve.chain import LOOKUP_THREADS
from cloche.ecosystems.python.resolve.long_tail import runs_elsewhere
from cloche.ecosystems.python.resolve.pypi_json import PypiJson, PypiUnavailable

NOTE = "# cloche platform-only: "
HINT = "nothing was installed for it; the script needs that operating system, or a Linux alternative"


def refusals(pypi: PypiJson | None, resolved: Sequence[Mapping[str, str | None]]) -> dict[str, tuple[str, str]]:
    """Scanned module -> (its project, why it runs only elsewhere), for the projects that do (asked side by side)."""
    pairs = [(str(e["module"]), str(e["package"])) for e in resolved if e.get("module") and e.get("package")]
    if pypi is None or not pairs:
        return {}

    def elsewhere(project: str) -> str | None:
        try:
            return runs_elsewhere(pypi.project(project))
        except PypiUnavailable:
            return None  # not known either way: the installer's own answer stands

    with ThreadPoolExecutor(max_workers=LOOKUP_THREADS) as pool:
        reasons = list(pool.map(elsewhere, [project for _, project in pairs]))
    return {
        module: (canonicalize_name(project), reason)
        for (module, project), reason in zip(pairs, reasons, strict=True)
        if reason is not None
    }


def annotate(lock_text: str, refused: Mapping[str, tuple[str, str]]) -> str:
    notes = [NOTE + json.dumps([module, project, reason]) for module, (project, reason) in sorted(refused.items())]
    return "".join(f"{n}\n" for n in notes) + lock_text


def unresolved(lock_text: str) -> tuple[dict[str, str | None], ...]:
    """The ``unresolved_imports`` entries the lock records."""
    out = []
    for line in lock_text.splitlines():
        if line.startswith(NOTE):
            module, _, reason = json.loads(line[len(NOTE) :])
            out.append({"module": module, "hint": f"{reason}: {HINT}"})
    return tuple(out)


def installable(needs: Sequence[ImportNeed], lock_text: str) -> list[ImportNeed]:
    """The needs less those the lock records as running only elsewhere (and their submodules)."""
    refused = [u["module"] for u in unresolved(lock_text) if u["module"]]
    return [n for n in needs if not any(n.module == m or n.module.startswith(f"{m}.") for m in refused)]
