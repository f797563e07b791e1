"""Warm interpreters: per sandbox, a Python that has imported the packages its entry needs and forks each run.

The zygote (``jail/zygote_jail.py``) is a long-lived run in the sandbox's own jail: its host uid, mounts,
environment, egress and seccomp, a cgroup counted against the sandbox's memory, killed with the sandbox (its
task is tracked like an exec's). It is started in the background after a cold ``.py`` exec whose entry needs
packages, with exactly that exec's environment, and serves later execs only while everything it was started
with is unchanged (``_key``: the environment's mounts and variables, the pre-imported modules, i.e. the
detection, the egress policy and the limits); otherwise it is stopped and the exec runs cold. It is stopped as
well after ``warm_idle_seconds`` without an exec, when it fails (that exec runs cold and its record says why),
at sandbox deletion and at shutdown.

Runs that stay cold, and say why in their record: other interpreter flags than ``python3 SCRIPT``, startup
variables (``PYTHON*``, ``LD_*``, thread-pool sizes) other than the zygote's, a run that holds secrets (the
zygote must never see a value meant for one run), and a workspace module named like a pre-imported one.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloche.errors import ResidentLimit
from cloche.jail.egress_layer import PROXY_PORT, EgressSession, proxy_env
from cloche.jail.profile import RESIDENT_DIR, SANDBOX_DIR, JailProfile, Mount, ResourceLimits, RunSpec
from cloche.jail.runner import OutputCallback, Runner, RunResult
from cloche.jail.zygote_host import ZYGOTE_SCRIPT, ColdInstead, ZygoteClient, ZygoteGone
from cloche.service.residents import Resident, ResidentEnded, Residents
from cloche.settings import Settings
from cloche.steps import mark

log = logging.getLogger("cloche.warm")

SOCKET_NAME = "zygote.sock"
SOCKET = f"{RESIDENT_DIR}/{SOCKET_NAME}"
SCRIPT = "/opt/cloche/zygote.py"
START_WAIT_SECONDS = 60.0  # a zygote still importing is waited for: its imports are what a cold run would redo
LIFETIME_SECONDS = 24 * 3600.0  # the zygote's own wall clock; idleness stops it long before
# Variables read once at interpreter (or library) start-up: a run that sets them otherwise must start cold.
STARTUP_PREFIXES = ("PYTHON", "LD_", "OPENBLAS_", "OMP_", "MKL_", "NUMEXPR_", "MALLOC_")
WarmNote = dict[str, Any]
# The next run's child is forked this long after a run, so that its fork and cgroup move never compete with the
# end of the request that ran (its answer, records and audit) nor with a cold run that follows at once; a run
# that comes sooner forks its own.
AHEAD_DELAY_SECONDS = 0.15


@dataclass
class _Zygote:
    key: str
    resident: Resident
    client: ZygoteClient
    ready: asyncio.Task[Path]  # the socket, once the zygote listens (its imports done)
    limits: ResourceLimits
    last_used: float = field(default_factory=time.monotonic)
    ahead: asyncio.Task[None] | None = None  # forking the next run's child (Runner.fork_ahead)
    forking: bool = False  # ``ahead`` is past its delay: its child is on its way


def _note(used: bool, reason: str | None = None) -> WarmNote:
    return {"used": used, "reason": reason}


def _startup_env(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(STARTUP_PREFIXES)}


def _fits(limits: ResourceLimits, zygote: ResourceLimits) -> bool:
    """Whether a run's limits are the zygote's where a run inherits them (rlimits); memory, CPU and pids are the
    run's own cgroup's."""
    return (limits.pids, limits.file_size_bytes, limits.open_files) == (
        zygote.pids,
        zygote.file_size_bytes,
        zygote.open_files,
    )


@dataclass(frozen=True)
class WarmRun:
    """One run the sandbox's warm interpreter may fork (or be started for, after a cold run): the run, the
    environment it was prepared in (its base variables, the modules to preload), whether it holds secrets."""

    sandbox_id: str
    preload: tuple[str, ...]
    base_env: Mapping[str, str]
    spec: RunSpec
    profile: JailProfile
    secret: bool


def _key(fork: WarmRun) -> str:
    profile = fork.profile
    what = {
        "env": dict(sorted(fork.base_env.items())),
        "mounts": [dataclasses.astuple(m) for m in profile.mounts],
        "egress": repr(profile.egress),
        "tmp": profile.tmp_size_bytes,
        "uid": profile.host_uid,
        "preload": list(fork.preload),
    }
    return hashlib.sha256(json.dumps(what, default=str, sort_keys=True).encode()).hexdigest()


class WarmInterpreters:
    def __init__(self, runner: Runner, residents: Residents, settings: Settings) -> None:
        self.runner = runner
        self.residents = residents
        self.settings = settings
        self._zygotes: dict[str, _Zygote] = {}
        self._failed: dict[str, str] = {}  # sandbox -> key whose zygote failed to start: not retried
        self._sweeper: asyncio.Task[None] | None = None

    @staticmethod
    def serves(spec: RunSpec) -> bool:
        """Only ``python3 SCRIPT ARGS`` (what a ``.py`` exec runs) is ever forked; other runs are not its."""
        return len(spec.argv) >= 2 and spec.argv[0] == "python3" and not spec.argv[1].startswith("-")

    def _refusal(self, fork: WarmRun) -> str | None:
        if not self.settings.warm_interpreter:
            return "the warm interpreter is off (CLOCHE_WARM_INTERPRETER)"
        if fork.secret:
            return "a run that holds secrets starts cold"
        if _startup_env(fork.spec.env) != _startup_env(fork.base_env):
            return "the run sets start-up variables (PYTHON*, LD_*, thread pools) of its own"
        return None

    async def run(self, fork: WarmRun, on_output: OutputCallback | None) -> tuple[RunResult | None, WarmNote]:
        """The run forked by the sandbox's zygote, or None and why not (then the caller runs it cold)."""
        sandbox_id, spec = fork.sandbox_id, fork.spec
        refused = "a command, not `python3 SCRIPT`" if not self.serves(spec) else None
        refused = refused or self._refusal(fork)
        if refused is not None:
            return None, _note(False, refused)
        zygote = self._zygotes.get(sandbox_id)
        if zygote is not None and not zygote.resident.running:  # it ended (killed, or a run ended it)
            await self.stop(sandbox_id)
            zygote = None
        if zygote is None:
            return None, _note(False, "no warm interpreter yet: it starts after this run")
        if zygote.key != _key(fork):
            await self.stop(sandbox_id)
            return None, _note(False, "the environment or the detected imports changed: the warm interpreter restarts")
        if not _fits(spec.limits, zygote.limits):
            return None, _note(False, "the run's pids or file limits differ from the warm interpreter's")
        try:
            await asyncio.wait_for(asyncio.shield(zygote.ready), START_WAIT_SECONDS)
            await self._settle_ahead(zygote)
            mark("warm: zygote ready")
            result = await self.runner.run_forked(spec, zygote.client, on_output)
        except (ZygoteGone, TimeoutError, ResidentEnded) as exc:
            await self.stop(sandbox_id)
            log.warning("warm interpreter unhealthy", extra={"sandbox_id": sandbox_id, "error": str(exc)})
            return None, _note(False, f"the warm interpreter was unhealthy ({exc}); this run started cold")
        zygote.last_used = time.monotonic()
        self._fork_ahead(zygote)
        if isinstance(result, ColdInstead):
            return None, _note(False, result.reason)
        return result, _note(True)

    async def start(self, fork: WarmRun) -> None:
        """After a cold run: start the sandbox's zygote for this environment, unless one runs for it already."""
        sandbox_id, spec, profile = fork.sandbox_id, fork.spec, fork.profile
        if not self.serves(spec) or self._refusal(fork) is not None:
            return
        key = _key(fork)
        current = self._zygotes.get(sandbox_id)
        if (current is not None and current.key == key and current.resident.running) or self._failed.get(
            sandbox_id
        ) == key:
            return
        await self.stop(sandbox_id)
        zspec = RunSpec(
            argv=("python3", SCRIPT, SOCKET, *fork.preload),
            env=dict(fork.base_env),
            cwd=SANDBOX_DIR,
            timeout_seconds=LIFETIME_SECONDS,
            output_limit_bytes=None,
            limits=spec.limits,
        )
        zprofile = dataclasses.replace(profile, mounts=(*profile.mounts, Mount("ro-bind", SCRIPT, ZYGOTE_SCRIPT)))
        client = ZygoteClient(Path(), {}, list)

        def started(egress: EgressSession | None) -> None:
            if egress is not None:  # its runs use the zygote's egress: its proxy variables, its refusals
                client.extra_env = proxy_env(PROXY_PORT)
                client.denied_hosts = egress.denied_hosts

        try:
            resident = await self.residents.start(
                sandbox_id, "zygote", zspec, zprofile, "warm python", on_started=started
            )
        except ResidentLimit:
            return  # the sandbox's residents are all in use: its runs stay cold
        client.socket_path = resident.socket(SOCKET_NAME)
        ready = asyncio.create_task(self._ready(sandbox_id, key, resident))
        zygote = _Zygote(key, resident, client, ready, spec.limits)
        self._zygotes[sandbox_id] = zygote
        ready.add_done_callback(lambda task: None if task.cancelled() or task.exception() else self._fork_ahead(zygote))
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.create_task(self._stop_idle())

    async def _ready(self, sandbox_id: str, key: str, resident: Resident) -> Path:
        try:
            socket = await resident.wait_for_socket(SOCKET_NAME, START_WAIT_SECONDS)
        except (ResidentEnded, TimeoutError):
            self._failed[sandbox_id] = key  # the same environment would fail the same way: not retried
            log.warning(
                "warm interpreter did not start",
                extra={"sandbox_id": sandbox_id, "output": resident.log.text()[-1000:]},
            )
            raise
        log.info("warm interpreter ready", extra={"sandbox_id": sandbox_id, "resident_id": resident.id})
        return socket

    def _fork_ahead(self, zygote: _Zygote) -> None:
        """The next run's child, forked and put in its cgroup now, off the next request's path."""

        async def fork() -> None:
            await asyncio.sleep(AHEAD_DELAY_SECONDS)
            zygote.forking = True
            try:
                await self.runner.fork_ahead(zygote.client, zygote.limits)
            finally:
                zygote.forking = False

        # A context of its own: it is no step of the request that happened to schedule it (cloche.steps).
        zygote.ahead = asyncio.create_task(fork(), context=contextvars.Context())

    @staticmethod
    async def _settle_ahead(zygote: _Zygote) -> None:
        """Before a run: a child on its way is waited for (it is this run's), one still waiting for its delay is
        called off (the run forks its own at once); a zygote that could not fork one raises ``ZygoteGone``."""
        ahead = zygote.ahead
        if ahead is None:
            return
        if not ahead.done() and not zygote.forking:
            ahead.cancel()
        await asyncio.wait([ahead])
        zygote.ahead = None  # only now: a run cancelled while waiting leaves it to stop() to wind up
        if not ahead.cancelled() and isinstance(ahead.exception(), ZygoteGone):
            raise ZygoteGone(str(ahead.exception()))

    async def stop(self, sandbox_id: str) -> None:
        zygote = self._zygotes.pop(sandbox_id, None)
        if zygote is None:
            return
        zygote.ready.cancel()
        if zygote.ahead is not None:
            zygote.ahead.cancel()
            with contextlib.suppress(BaseException):
                await zygote.ahead
        await self.runner.discard_ahead(zygote.client)  # its child's cgroup
        await self.residents.stop(zygote.resident.id)

    async def stop_all(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        await asyncio.gather(*(self.stop(s) for s in list(self._zygotes)))

    async def _stop_idle(self) -> None:
        idle = self.settings.warm_idle_seconds
        while self._zygotes:
            await asyncio.sleep(min(idle / 4, 30.0))
            now = time.monotonic()
            for sandbox_id, zygote in list(self._zygotes.items()):
                if now - zygote.last_used > idle:
                    log.info("warm interpreter idle: stopped", extra={"sandbox_id": sandbox_id})
                    await self.stop(sandbox_id)
