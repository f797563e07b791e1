"""What the app holds for its lifetime: settings, stores, services, the runner, background tasks."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from cloche.agent.local import LocalAgent
from cloche.agent.placement import Placement, placement_for
from cloche.ecosystems.facts_cache import FactsCache
from cloche.ecosystems.go.ecosystem import GoEcosystem, find_goroot
from cloche.ecosystems.java.ecosystem import JavaEcosystem
from cloche.ecosystems.node.ecosystem import NodeEcosystem
from cloche.ecosystems.python.ecosystem import PythonEcosystem
from cloche.ecosystems.python.resolve import Resolver
from cloche.ecosystems.python.resolve.pypi_json import PypiJson
from cloche.ecosystems.registry import EcosystemRegistry
from cloche.jail import port_relay, preflight
from cloche.jail.bwrap_jail import BwrapJail
from cloche.jail.cgroups import Cgroups
from cloche.jail.egress_layer import EgressHost, build_launcher
from cloche.jail.egress_policy import EgressPolicy, registry_addresses
from cloche.jail.egress_upstream_host import UpstreamProxy
from cloche.jail.gvisor_jail import GvisorJail, GvisorOptions, build_compat
from cloche.jail.install import InstallJailFactory, InstallSettings
from cloche.jail.mounts import write_synthetic_etc
from cloche.jail.profile import ResourceLimits
from cloche.jail.runner import Runner
from cloche.jail.spawn_host import build_spawner
from cloche.jail.supervisor import Children
from cloche.jail.tier import TierHost
from cloche.jail.tools import stage_tools
from cloche.jail.uid_lock import UidRangeLock
from cloche.metrics import Metrics
from cloche.paths import UID_LOCK_DIR, DataPaths
from cloche.service.audit_trail import AuditTrail
from cloche.service.contexts import ContextService
from cloche.service.deps import DependencyService
from cloche.service.evidence import EvidenceService
from cloche.service.execute import ExecService
from cloche.service.files import FileService
from cloche.service.processes import ProcessService
from cloche.service.residents import Residents
from cloche.service.sandboxes import SandboxService
from cloche.service.secrets import SecretService, load_key
from cloche.service.warm import WarmInterpreters
from cloche.settings import Settings
from cloche.store.audit_log import AuditLog
from cloche.store.envstore import EnvironmentStore
from cloche.store.metadata import MetadataStore
from cloche.store.open_store import open_metadata_store

log = logging.getLogger("cloche.server")


def cgroup_parent(data_dir: Path) -> str:
    """One cgroup parent per data dir, so two servers on one host never sweep each other's runs."""
    return "cloche-" + hashlib.sha256(str(data_dir).encode()).hexdigest()[:10]


def trusted_networks(settings: Settings) -> tuple[str, ...]:
    trusted = list(settings.host_list(settings.egress_trusted_networks))
    if settings.egress_trust_registry_addresses:
        trusted += registry_addresses(settings.host_list(settings.registry_allow))
    return tuple(trusted)


@dataclass
class AppState:
    settings: Settings
    paths: DataPaths
    store: MetadataStore
    runner: Runner
    cgroups: Cgroups
    envs: EnvironmentStore
    sandboxes: SandboxService
    files: FileService
    deps: DependencyService
    execs: ExecService
    contexts: ContextService
    evidence: EvidenceService
    secrets: SecretService
    residents: Residents
    local_agent: LocalAgent  # this process's node: what an agent process serves, and the single-node default
    placement: Placement  # which agent holds which sandbox
    processes: ProcessService
    api_keys: dict[str, str]
    tools: dict[str, Path]
    bwrap: Path
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    metrics: Metrics = field(default_factory=Metrics)
    host_checked: bool = False
    uid_lock: UidRangeLock | None = None  # held from start() to stop(): no other server shares these uids

    @classmethod
    def build(cls, settings: Settings) -> AppState:
        paths = DataPaths(settings.data_dir)
        fixed = paths.create()
        if fixed:
            log.warning("data dir entries made private", extra={"paths": [str(p) for p in fixed]})
        etc = write_synthetic_etc(paths.jail, settings.jail_uid)
        cgroups = Cgroups.detect(cgroup_parent(paths.root))
        egress_launcher = build_launcher(paths.jail / "bin")
        staged = stage_tools(paths.jail)
        upstream = UpstreamProxy.parse(settings.egress_upstream_proxy) if settings.egress_upstream_proxy else None
        egress = EgressHost(paths.run, trusted_networks(settings), egress_launcher, upstream)
        children = Children()
        spawner = build_spawner(paths.jail / "bin")
        host = TierHost(children, etc, settings.jail_uid, egress)
        bwrap = BwrapJail(host, staged.bwrap, spawner=spawner)
        probe_uid = settings.uid_base + settings.uid_count - 1  # the preflight's uid: never a sandbox's while idle
        options = GvisorOptions(probe_uid, settings.gvisor_platform, build_compat(paths.jail), settings.runsc)
        gvisor = GvisorJail(host, options)
        runner = Runner(cgroups, children, [bwrap, gvisor])
        store = open_metadata_store(settings, paths)
        envs = EnvironmentStore(paths.envs)
        envs.create()
        registry = EcosystemRegistry(
            [
                PythonEcosystem(
                    settings.python_index_url,
                    settings.python_wheel_dir,
                    settings.allow_unknown_imports,
                    Resolver(
                        pypi=PypiJson(settings.pypi_json_url, paths.registry_facts("python")),
                        min_age_days=settings.package_min_age_days,
                    ),
                    stage=paths.jail / "tools",
                ),
                NodeEcosystem(settings.npm_registry, paths.registry_facts("npm"), settings.package_min_age_days),
                GoEcosystem(find_goroot(), settings.go_proxy, settings.go_sumdb, stage=paths.jail / "tools"),
                JavaEcosystem(settings.maven_repository, stage=paths.jail / "tools"),
            ]
        )
        tools = {"uv": staged.uv}
        install = InstallSettings(
            builder_uid=settings.builder_uid,
            tools=tools,
            cache_root=paths.cache,
            scratch=paths.tmp,
            egress=EgressPolicy(settings.host_list(settings.registry_allow)),
            isolation=settings.install_isolation,
            limits=ResourceLimits(
                memory_bytes=settings.install_memory_mb * 1024 * 1024,
                pids=1024,
                cpu_cores=settings.max_cpu_cores,
                file_size_bytes=settings.install_max_file_mb * 1024 * 1024,
                open_files=4096,
            ),
        )
        deny = frozenset(settings.host_list(settings.license_deny))
        metrics = Metrics()  # this app's own registry, served at /metrics
        metrics.watch(envs, lambda: len(store.used_uids(settings.node_name)))  # one host uid per live sandbox here
        verdicts = FactsCache(paths.build_verdicts, "builds")
        jails = InstallJailFactory(runner, install, envs)
        deps = DependencyService(
            store,
            envs,
            jails,
            deny,
            metrics,
            settings.resolution_ttl_seconds,
            verdicts,
            failed_build_ttl=settings.failed_build_ttl_seconds,
        )
        audit = AuditTrail(AuditLog(paths.root))
        sandboxes = SandboxService(settings, paths, store, audit, runner.require)
        configured_key = settings.secrets_key.get_secret_value() if settings.secrets_key else None
        secrets = SecretService(store, load_key(configured_key, paths.secrets_key))
        residents = Residents(
            runner,
            paths.run,
            log_bytes=settings.resident_log_bytes,
            most_per_sandbox=settings.max_residents_per_sandbox,
        )
        warm = WarmInterpreters(runner, residents, settings)
        sandboxes.on_destroy(warm.stop)  # before the residents: its registry forgets the zygote first
        sandboxes.on_destroy(residents.stop_sandbox)
        files = FileService(sandboxes)
        execs = ExecService(sandboxes, runner, registry, deps, secrets, warm=warm)
        local_agent = LocalAgent(settings.node_name, sandboxes, files, execs)
        python = registry.by_name("python")
        assert isinstance(python, PythonEcosystem)
        contexts = ContextService(execs, residents, python, jails, envs)
        return cls(
            settings=settings,
            paths=paths,
            store=store,
            runner=runner,
            cgroups=cgroups,
            envs=envs,
            sandboxes=sandboxes,
            files=files,
            deps=deps,
            execs=execs,
            contexts=contexts,
            evidence=EvidenceService(sandboxes),
            secrets=secrets,
            residents=residents,
            local_agent=local_agent,
            placement=placement_for(settings, local_agent, sandboxes),
            processes=ProcessService(execs, residents, port_relay.stage(paths.jail / "bin")),
            api_keys=settings.parsed_api_keys(),
            tools=tools,
            bwrap=staged.bwrap,
            metrics=metrics,
        )

    async def check_host(self) -> None:
        """Prove the jail works here, or raise a ClocheError that says how to fix the host (once per app)."""
        if not self.host_checked:
            await preflight.check(self.runner, self.paths, self.settings, self.tools, self.bwrap)
            await asyncio.to_thread(self.sandboxes.quota.choose)  # volume or walk: no volume, no server if asked
            self.host_checked = True

    @property
    def routes_to_agents(self) -> bool:
        """An API server in front of node agents (CLOCHE_AGENTS, or Kubernetes pods) runs no sandbox itself: no
        jail, no uid pool."""
        return bool(self.settings.agents) or self.settings.backend == "kubernetes"

    async def start(self) -> None:
        if self.routes_to_agents:
            log.info("placing sandboxes on node agents", extra={"agents": sorted(self.placement.agents)})
            if self.placement.on_demand is not None:
                self.tasks.append(asyncio.create_task(self.placement.on_demand.run()))
            return
        cfg = self.settings
        owner = f"pid {os.getpid()}, data dir {self.paths.root}"
        self.uid_lock = UidRangeLock.acquire(UID_LOCK_DIR, cfg.uid_base, cfg.uid_count, cfg.builder_uid, owner)
        Cgroups.detect(self.cgroups.parent)  # the parent again, should an earlier stop() have removed it
        swept = self.cgroups.sweep()
        await self.check_host()  # no jail, no server
        self.envs.remove_temp()
        await self.sandboxes.reconcile()  # every live workspace mounted before the first request
        repaired = self.deps.repair(self.execs.ecosystems.ecosystems)  # what a crash cut short, rebuilt
        if repaired:
            log.info("bytecode companions rebuilding", extra={"env_keys": repaired})
        log.info("cgroups swept", extra={"cgroups_removed": swept})
        self.tasks.append(asyncio.create_task(self._housekeeping()))
        self.tasks.append(asyncio.create_task(self._collect_environments()))

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reaper_interval_seconds)
            try:
                await self.sandboxes.reap_expired()
                await self.contexts.reap_idle()
                self.runner.reap()
            except Exception:  # keep the loop alive; the next tick retries
                log.exception("housekeeping failed")

    async def _collect_environments(self) -> None:
        while True:
            await asyncio.sleep(self.settings.gc_interval_seconds)
            try:
                referenced = self.deps.referenced_keys() | self.contexts.held_keys()
                removed = await asyncio.to_thread(self.envs.prune, referenced, self.settings.env_gc_grace_seconds)
                if removed:
                    self.metrics.store_changed()
                    log.info("environments pruned", extra={"removed": removed})
            except Exception:
                log.exception("environment collection failed")

    async def stop(self) -> None:
        if self.execs.warm is not None:
            await self.execs.warm.stop_all()
        await self.contexts.stop_all()  # kernels, their cgroups and sockets
        background = [*self.tasks, *self.deps.background]
        for task in background:
            task.cancel()
        for task in background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.placement.close()
        if not self.routes_to_agents:
            await self.residents.stop_all()  # their processes, cgroups and socket folders, before the parent goes
            await asyncio.to_thread(self.sandboxes.quota.unmount_all)  # mounted again at the next start
            await asyncio.to_thread(self.cgroups.remove_parent)  # this server's cloche-<hash>, made again at start
        if self.uid_lock is not None:
            self.uid_lock.release()
        self.store.close()
        self.sandboxes.audit.log.close()
