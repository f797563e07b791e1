"""Dependencies for one exec: detect, skip when unchanged, reuse from the store, or build once.

The fast path is the product's promise: when the detection fingerprint equals the one recorded for the
sandbox and its environment is in the store, no resolver runs and nothing touches the network.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloche.ecosystems.base import Component, Detection, Ecosystem, ExecEnv, InstallFailed, Lock, Needs, Verification
from cloche.ecosystems.facts_cache import FactsCache
from cloche.jail.install import InstallJailFactory
from cloche.jail.profile import Mount
from cloche.metrics import Metrics
from cloche.models import ImportFailure, InstalledPackage, InstallReport, RecoveryStep, ResolvedImport
from cloche.sbom.licenses import denied
from cloche.service import sandbox_needs
from cloche.service.build_verdicts import BuildVerdicts, Built
from cloche.service.companions import Companions
from cloche.service.detection_memo import DetectionMemo
from cloche.service.ids import utcnow
from cloche.service.records import DependencyRecord
from cloche.service.run_env import combine as combine_exec_envs
from cloche.steps import mark
from cloche.store.envstore import EnvironmentStore, environment_key
from cloche.store.metadata import EnvBinding, MetadataStore

log = logging.getLogger("cloche.deps")
UNVERIFIED_SUFFIX = "-unverified"

Progress = Callable[[Mapping[str, Any]], Awaitable[None]]


def unverified_key(key: str) -> str:
    """Where an environment that failed verification is kept for the run that built it: never bound, never
    found by its lock's key, collected like any unreferenced entry."""
    return key + UNVERIFIED_SUFFIX


def _verification_report(verification: Verification | None) -> dict[str, Any]:
    if verification is None:
        return {}
    return {
        "verified": verification.ok,
        "recovery": [RecoveryStep.model_validate(dataclasses.asdict(s)) for s in verification.steps],
        "import_failures": [
            ImportFailure(module=f.module, error=f.error, names=list(f.names)) for f in verification.failures
        ],
    }


@dataclass(frozen=True)
class Prepared:
    """What an exec needs from the dependency step: the record it is stored and answered with, and the
    mounts and variables that make its environment visible to the run."""

    record: DependencyRecord
    exec_env: ExecEnv = field(default_factory=ExecEnv)
    preload: tuple[str, ...] | None = None  # what a warm interpreter imports ahead; None: none runs it


class DependencyService:
    def __init__(
        self,
        store: MetadataStore,
        envs: EnvironmentStore,
        jails: InstallJailFactory,
        denied_licenses: frozenset[str] = frozenset(),
        metrics: Metrics | None = None,
        resolution_ttl: float = 3600.0,
        verdicts: FactsCache | None = None,
        failed_build_ttl: float = 600.0,
    ) -> None:
        self.store = store
        self.envs = envs
        self.jails = jails
        self.denied_licenses = denied_licenses
        self.metrics = metrics or Metrics()
        self._builds: dict[str, asyncio.Future[Built]] = {}  # single flight per environment key
        self.companions = Companions(envs, jails, self.metrics)
        self.background = self.companions.background  # companion builds running off the exec's path
        self.detections = DetectionMemo()  # an unchanged workspace needs no re-scan
        # Recent resolutions by detection fingerprint, shared across sandboxes: a new sandbox with the same
        # needs skips the resolver (and the network) and goes straight to the store.
        self._resolutions: dict[tuple[str, str, str], tuple[float, Lock]] = {}
        self.resolution_ttl = resolution_ttl
        # Unions of a sandbox's needs the resolver refused, by fingerprint (when, what it said): while recent,
        # the entry goes straight to an environment of its own.
        self._conflicts: dict[tuple[str, str], tuple[float, str]] = {}
        # What building a lock concluded (repaired, unrepairable, failed), on disk: build_verdicts.py.
        self.verdicts = BuildVerdicts(verdicts, resolution_ttl, failed_build_ttl)

    async def prepare(
        self,
        sandbox_id: str,
        ecosystem: Ecosystem,
        root: Path,
        entries: Sequence[str],
        progress: Progress | None = None,
        declared: Needs | None = None,
        codes: Mapping[str, str] | None = None,
    ) -> Prepared:
        """Detect what ``entries`` need, then bind the sandbox to an environment covering that and everything
        else the sandbox needs (``declared``: its typed packages after this exec's installs; see
        sandbox_needs.py), through the fast path, the store, or a build. ``codes``: the source of entries that
        are code given on a command line (``python -c``), by entry name. An install failure is reported in the
        record, never raised."""
        started = time.monotonic()
        codes = codes or {}
        detections = {e: await self.detections.find(sandbox_id, ecosystem, root, e, codes.get(e)) for e in entries}
        mark("deps: detected (memo or scan)")
        stored_needs = self.store.get_needs(sandbox_id, ecosystem.name)
        planned = sandbox_needs.plan(ecosystem, stored_needs, detections, declared)
        # Code given on a command line is this exec's alone: it is covered now, never kept as a source of the
        # sandbox's needs (so `pip uninstall x` after `python -c 'import x'` leaves no x behind).
        transient = {sandbox_needs.entry_source(e) for e in codes}
        writes = {source: needs for source, needs in planned.writes.items() if source not in transient}
        own = list(detections.values())
        detection = planned.detection
        preloads = [ecosystem.preload(d) for d in own]
        preload = None if not own or None in preloads else tuple(dict.fromkeys(m for p in preloads for m in p or ()))

        def record(lock: Lock | None = None, key: str | None = None, **report: Any) -> DependencyRecord:
            # What this exec's entries asked for; a command that starts none reports the sandbox's union.
            requested = [r for d in own for r in d.requested] if own else list(detection.requested if detection else ())
            install = InstallReport(
                source=own[0].source if len(own) == 1 else "sandbox",
                requested=requested,
                resolved=[ResolvedImport.model_validate(r) for d in own for r in d.resolved],
                duration_ms=int((time.monotonic() - started) * 1000),
                **{"installed": [], "reused_environment": False, **report},
            )
            return DependencyRecord.of(
                ecosystem.name,
                ecosystem.abi(),
                install=install,
                unlisted=[u for d in own for u in d.unlisted],
                unresolved=[u for d in own for u in d.unresolved] + list(ecosystem.unresolved_in(lock) if lock else ()),
                lock=lock,
                env_key=key,
            )

        if detection is None or not ecosystem.needs_environment(detection):
            self._record(sandbox_id, ecosystem, writes)
            if ecosystem.accumulates is not None and stored_needs:  # its sources need nothing any more
                self.store.delete_binding(sandbox_id, ecosystem.name)
            return Prepared(record(), preload=preload)
        binding = self.store.get_binding(sandbox_id, ecosystem.name)
        note: dict[str, str] = {}
        try:
            try:
                conflict = self._conflicts.get((ecosystem.name, detection.fingerprint))
                if (
                    conflict is not None
                    and planned.alone is not None
                    and time.monotonic() - conflict[0] < self.resolution_ttl
                ):
                    raise InstallFailed(conflict[1])  # known not to resolve: straight to the entry's own needs
                lock, key, reused, verification = await self._environment(
                    sandbox_id, ecosystem, detection, binding, progress
                )
                if verification is None or verification.ok:
                    self._record(sandbox_id, ecosystem, writes)
            except InstallFailed as exc:
                if planned.alone is None or not ecosystem.needs_environment(planned.alone):
                    raise
                # The entry's needs conflict with the sandbox's others: it runs in an environment of its own,
                # and the sandbox keeps its environment (and its needs) as they were.
                self._conflicts[(ecosystem.name, detection.fingerprint)] = (time.monotonic(), exc.message)
                note["note"] = (
                    "this entry's needs could not be combined with the sandbox's other needs, so it runs with "
                    f"its own; commands keep the sandbox's environment. The resolver said:\n{exc.message}"
                )
                detection = planned.alone
                lock, key, reused, verification = await self._environment(
                    sandbox_id, ecosystem, detection, None, progress, bind=False
                )
        except InstallFailed as exc:
            log.warning("install failed", extra={"ecosystem": ecosystem.name, "error": exc.message})
            return Prepared(record(error=exc.message))
        self.metrics.environment_lookup(hit=reused)
        stored = self.envs.get(key)
        assert stored is not None
        fresh: list[Component] = []
        if binding is None or binding.fingerprint != detection.fingerprint:
            previous = {(c["name"], c["version"]) for c in binding.components} if binding else set()
            fresh = [c for c in lock.components if (c.name, c.version) not in previous]
        installed = [InstalledPackage(name=c.name, version=c.version) for c in fresh]
        checked = _verification_report(verification)
        done = record(lock, key, installed=installed, reused_environment=reused, environment=key, **checked, **note)
        runs = own or [detection]  # each entry's own import path (src layouts)
        return Prepared(done, combine_exec_envs([ecosystem.exec_env(stored.path, d) for d in runs]), preload)

    async def _environment(
        self,
        sandbox_id: str,
        ecosystem: Ecosystem,
        detection: Detection,
        binding: EnvBinding | None,
        progress: Progress | None,
        bind: bool = True,
    ) -> tuple[Lock, str, bool, Verification | None]:
        """The environment for ``detection``: the bound one when its fingerprint matches (no resolver, no
        network), else resolved and found in the store or built, and bound to the sandbox when ``bind``."""
        if binding and binding.fingerprint == detection.fingerprint and self.envs.get(binding.env_key):
            lock = Lock(binding.lock, tuple(Component.from_dict(c) for c in binding.components))
            return lock, binding.env_key, True, None
        with self.metrics.install_duration.time():
            lock, key, reused, verification = await self._install(sandbox_id, ecosystem, detection, progress, bind)
        if progress is not None:
            packages = [c.name for c in lock.components]
            await progress({"phase": "installed", "packages": packages, "reused": reused})
        return lock, key, reused, verification

    def _record(self, sandbox_id: str, ecosystem: Ecosystem, writes: Mapping[str, Needs]) -> None:
        """Keep what each source needs now (an empty need forgets the source)."""
        for need in sandbox_needs.records(sandbox_id, ecosystem.name, writes, utcnow()):
            if need.requirements or need.optional or need.constraints:
                self.store.set_need(need)
            else:
                self.store.delete_need(sandbox_id, ecosystem.name, need.source)

    async def _install(
        self,
        sandbox_id: str,
        ecosystem: Ecosystem,
        detection: Detection,
        progress: Progress | None,
        bind: bool,
    ) -> tuple[Lock, str, bool, Verification | None]:
        """Resolve (or recall) the lock, find or build its environment, and bind it (when ``bind``) when it is
        verified."""
        if progress is not None:
            await progress({"phase": "resolving", "requested": list(detection.requested)})
        memo = (ecosystem.name, ecosystem.abi(), detection.fingerprint)
        lock = self._recent_lock(ecosystem, detection)
        if lock is None:
            async with self.jails.session(ecosystem) as jail:
                lock = await ecosystem.resolve(detection, jail)
        key = environment_key(ecosystem.name, lock.text, ecosystem.abi())
        reused = self.envs.get(key) is not None and await self._serves(ecosystem, detection, key)
        verification = None
        earlier = None if reused else self.verdicts.earlier(key, detection)
        if earlier is not None and self.envs.get(earlier.key) is None:
            earlier = None
        if earlier is not None:
            lock, key, reused = earlier.lock, earlier.key, True
            verification = None if earlier.verification is None or earlier.verification.ok else earlier.verification
        elif not reused:
            if progress is not None:
                await progress({"phase": "installing", "packages": [f"{c.name}=={c.version}" for c in lock.components]})
            built = await self._build_once(key, ecosystem, detection, lock)
            lock, key, verification = built.lock, built.key, built.verification
        stored = self.envs.get(key)
        assert stored is not None
        components = ecosystem.inventory(stored.path, lock, detection.source)
        self._check_licenses(components)
        if verification is not None and not verification.ok:
            # Run with the best environment found, but neither remember nor bind it: the next exec tries again.
            log.warning("environment not verified", extra={"ecosystem": ecosystem.name, "environment": key})
            return Lock(lock.text, tuple(components)), key, reused, verification
        self._resolutions[memo] = (time.monotonic(), lock)
        if not bind:
            return Lock(lock.text, tuple(components)), key, reused, verification
        self.store.set_binding(
            EnvBinding(
                sandbox_id=sandbox_id,
                ecosystem=ecosystem.name,
                fingerprint=detection.fingerprint,
                env_key=key,
                lock=lock.text,
                components=[c.to_dict() for c in components],
                updated_at=utcnow(),
            )
        )
        packages = [f"{c.name}=={c.version}" for c in components]
        log.info(
            "environment bound",
            extra={"ecosystem": ecosystem.name, "environment": key, "store_hit": reused, "packages": packages},
        )
        return Lock(lock.text, tuple(components)), key, reused, verification

    async def _serves(self, ecosystem: Ecosystem, detection: Detection, key: str) -> bool:
        """Whether the stored environment ``key``, verified for the imports of the entry that built it, imports
        what ``detection`` requires too (the same lock may lack a name or submodule this entry takes from it):
        checked once per detection, in an install jail with the environment mounted read-only. False: build and
        verify (and repair) for this entry."""
        check_key = ecosystem.check_key(detection)
        if check_key is None or self.verdicts.checked(key, check_key):
            return True
        stored = self.envs.get(key)
        assert stored is not None
        readonly = (Mount("ro-bind", ecosystem.env_mount, stored.path),)
        async with self.jails.session(ecosystem, mounts=readonly) as jail:
            serves = await ecosystem.check(detection, jail)
        if serves:
            self.verdicts.mark_checked(key, check_key)
        return serves

    async def _build_once(self, key: str, ecosystem: Ecosystem, detection: Detection, lock: Lock) -> Built:
        """Build ``key`` unless another exec is already building it (then take that build's outcome), or unless
        it failed to build recently (then fail the same way, at once)."""
        self.verdicts.raise_recent_failure(key, detection)
        pending = self._builds.get(key)
        if pending is not None:
            try:
                return await asyncio.shield(pending)
            except Exception as exc:
                raise InstallFailed("a concurrent install of the same environment failed; run again") from exc
        future: asyncio.Future[Built] = asyncio.get_running_loop().create_future()
        self._builds[key] = future
        try:
            built = await self._build(ecosystem, detection, lock)
            future.set_result(built)
            return built
        except InstallFailed as exc:
            if self.verdicts.remember_failure(key, detection, exc):  # with its resolution: a repeat skips both
                self._resolutions[(ecosystem.name, ecosystem.abi(), detection.fingerprint)] = (time.monotonic(), lock)
            future.set_exception(exc)
            future.exception()
            raise
        except BaseException as exc:
            future.set_exception(exc if isinstance(exc, Exception) else InstallFailed("install interrupted"))
            future.exception()  # mark retrieved: waiters report the failure themselves
            raise
        finally:
            self._builds.pop(key, None)

    async def _build(self, ecosystem: Ecosystem, detection: Detection, lock: Lock) -> Built:
        """Build, verify (the ecosystem may repair the environment, ending with another lock), then seal: under
        the lock's key when verified, else apart, where no lookup by lock finds it."""
        started_from = environment_key(ecosystem.name, lock.text, ecosystem.abi())
        async with self.jails.session(ecosystem, build=True) as jail:
            await ecosystem.build(lock, jail)
            verification = await ecosystem.verify(detection, lock, jail)
            if verification is not None:
                lock = verification.lock
            key = environment_key(ecosystem.name, lock.text, ecosystem.abi())
            changed = key != started_from
            sealed = verification is None or verification.ok
            if not sealed:
                key = unverified_key(key)
            assert jail.build_dir is not None
            meta = {"ecosystem": ecosystem.name, "lock": lock.text, "verified": sealed}
            stored = self.envs.put(key, jail.build_dir, meta)
            self.metrics.store_changed()
        built = Built(lock, key, verification)
        if changed or not sealed:
            self.verdicts.record(started_from, detection, built)
        if sealed and (check_key := ecosystem.check_key(detection)) is not None:
            self.verdicts.mark_checked(key, check_key)
        if sealed:
            self.companions.start(key, ecosystem, stored.path)
        return built

    def _check_licenses(self, components: list[Component]) -> None:
        """Refuse the install when a package's license is on the server's deny list (before it is bound)."""
        for component in components:
            if component.license and denied(component.license, self.denied_licenses):
                raise InstallFailed(
                    f"{component.name}=={component.version} is licensed {component.license}, which this server "
                    "does not allow (CLOCHE_LICENSE_DENY)"
                )

    def current(self, sandbox_id: str, ecosystem: Ecosystem) -> Prepared:
        """The sandbox's bound environment as-is (for shell commands): no detection, no install."""
        binding = self.store.get_binding(sandbox_id, ecosystem.name)
        stored = self.envs.get(binding.env_key) if binding else None
        if binding is None or stored is None:
            return Prepared(DependencyRecord.of(ecosystem.name, ecosystem.abi()))
        detection = Detection(ecosystem.name, "bound", (), binding.fingerprint)
        lock = Lock(binding.lock, tuple(Component.from_dict(c) for c in binding.components))
        record = DependencyRecord.of(ecosystem.name, ecosystem.abi(), lock=lock, env_key=binding.env_key)
        return Prepared(record, ecosystem.exec_env(stored.path, detection))

    def _recent_lock(self, ecosystem: Ecosystem, detection: Detection) -> Lock | None:
        found = self._resolutions.get((ecosystem.name, ecosystem.abi(), detection.fingerprint))
        if found is None or time.monotonic() - found[0] > self.resolution_ttl:
            return None
        return found[1]

    def referenced_keys(self) -> set[str]:
        return self.store.bound_env_keys()

    def repair(self, ecosystems: Iterable[Ecosystem]) -> list[str]:
        """At start-up: the companions a crash cut short, started again (see companions.py); returns keys."""
        return self.companions.repair(self.referenced_keys(), ecosystems)
