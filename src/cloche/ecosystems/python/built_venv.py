"""Host side: the venv being built in an install jail, as verification and recovery drive it: its imports checked
(``check_imports.py`` runs in the jail), locked again and synced."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from cloche.ecosystems.base import INSTALL_INPUTS, InstallJail, Lock, RecoveryStep
from cloche.ecosystems.python import recovery
from cloche.ecosystems.python.check_imports import MARK as CHECK_MARK
from cloche.ecosystems.python.needs import ImportNeed
from cloche.jail import display

CHECK_TIMEOUT = 600.0
CHECK_SCRIPT = Path(__file__).with_name("check_imports.py")  # runs in the jail: see its docstring


class Relocker(Protocol):
    """What a venv being built needs of its ecosystem: a lock for other requirements, and a sync to it."""

    async def lock_for(
        self, requested: Sequence[str], constraints: Sequence[str], jail: InstallJail, provenance: str
    ) -> Lock: ...

    async def sync(self, lock: Lock, jail: InstallJail, *, fresh: bool = False) -> None: ...


class BuiltVenv:
    """The venv being built, as recovery drives it: checked, re-locked and re-synced in one install jail."""

    def __init__(self, ecosystem: Relocker, jail: InstallJail, constraints: Sequence[str], source: str) -> None:
        self.ecosystem, self.jail, self.constraints, self.source = ecosystem, jail, constraints, source
        self.display: dict[str, str] = {}  # after the last check: import -> why it needs an X display

    async def check(self, needs: Sequence[ImportNeed]) -> dict[str, recovery.Answer]:
        answers = await check_imports(self.jail, self.jail.build_mount, needs)
        self.display = {m: a.error for m, a in answers.items() if a.display}
        return answers

    def display_steps(self) -> tuple[RecoveryStep, ...]:
        """When the venv's imports need an X display: marked so (its runs start one) and reported."""
        if not self.display or self.jail.build_dir is None:
            return ()
        (self.jail.build_dir / display.MARKER).write_text("".join(f"{m}\n" for m in sorted(self.display)))
        why = "the import needs an X display; it imports under a virtual one, which each run of this environment gets"
        return tuple(RecoveryStep("display", m, "", "fixed", why) for m in sorted(self.display))

    async def relock(self, requirements: Sequence[str]) -> Lock:
        return await self.ecosystem.lock_for(requirements, self.constraints, self.jail, self.source)

    async def sync(self, lock: Lock) -> None:
        await self.ecosystem.sync(lock, self.jail)


async def check_imports(jail: InstallJail, venv: str, needs: Sequence[ImportNeed]) -> dict[str, recovery.Answer]:
    """Import each need with the venv at ``venv`` in ``jail`` (see check_imports.py)."""
    # Package code runs here: a private cache, and the venv read-only so nothing it does is sealed.
    files = {
        "check_imports.py": CHECK_SCRIPT.read_text(),
        "display_jail.py": display.JAIL_SOURCE,
        "imports.json": json.dumps([n.to_dict() for n in needs]),
    }
    argv = [f"{venv}/bin/python", "-I", "-B", f"{INSTALL_INPUTS}/check_imports.py"]
    result = await jail.run(
        [*argv, f"{INSTALL_INPUTS}/imports.json"],
        files=files,
        shared_cache=False,
        build_readonly=True,
        timeout_seconds=min(CHECK_TIMEOUT, 60.0 + 30.0 * len(needs)),
    )
    answers: dict[str, recovery.Answer] = {}
    for line in result.stdout.splitlines():
        if line.startswith(CHECK_MARK):
            data = json.loads(line[len(CHECK_MARK) :])
            answers[data["module"]] = recovery.Answer(
                data["module"],
                data["kind"],
                data.get("missing"),
                tuple(data.get("names") or ()),
                data["error"],
                bool(data.get("display")),
            )
    return answers
