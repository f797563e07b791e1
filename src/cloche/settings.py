"""The one settings object. Environment variables ``CLOCHE_*``, CLI flags and defaults all land here.

Every field is documented; ``tests/test_settings.py`` fails when one is not, and ``docs/operations.md``
lists them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cloche.jail.egress_upstream_host import UpstreamProxy
from cloche.jail.profile import Isolation

DEFAULT_REGISTRIES: tuple[str, ...] = (
    "pypi.org:443",
    "files.pythonhosted.org:443",
    "registry.npmjs.org:443",
    "proxy.golang.org:443",
    "sum.golang.org:443",
    "repo.maven.apache.org:443",
    "repo1.maven.org:443",
)


def bare_key_tenant(key: str) -> str:
    """The tenant of a key given without a name: two keys are one tenant only if they are equal."""
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:16]


class Settings(BaseSettings):
    """Server configuration; read from ``CLOCHE_<FIELD>`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="CLOCHE_", extra="forbid")

    host: str = Field("127.0.0.1", description="Address the HTTP server binds.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port the HTTP server binds (0 picks a free one).")
    data_dir: Path = Field(
        Path("/var/lib/cloche"),
        description="Root of all state: SQLite metadata, workspaces, environments, run logs, audit log.",
    )
    api_keys: str = Field(
        "",
        description=(
            "Comma-separated API keys, each optionally 'tenant:key'. Empty means no auth, "
            "which is only allowed on a loopback address."
        ),
    )
    api_keys_file: Path | None = Field(
        None, description="File with one 'tenant:key' (or bare key) per line; merged with api_keys."
    )
    default_timeout_seconds: float = Field(30.0, gt=0, description="Wall clock for an exec that asks for none.")
    max_timeout_seconds: float = Field(600.0, gt=0, description="Largest wall clock an exec may ask for.")
    output_limit_bytes: int = Field(
        1_048_576, gt=0, description="Cap per stream (stdout, stderr) kept for one run; beyond it, truncated."
    )
    max_upload_bytes: int = Field(64 * 1_048_576, gt=0, description="Largest single upload request body.")
    max_archive_members: int = Field(10_000, gt=0, description="Most members one uploaded archive may hold.")
    max_archive_bytes: int = Field(256 * 1_048_576, gt=0, description="Most bytes one uploaded archive may expand to.")
    default_memory_mb: int = Field(1024, gt=0, description="Memory (RAM + swap) per exec, in MiB, unless asked.")
    max_memory_mb: int = Field(8192, gt=0, description="Most memory an exec may ask for, in MiB.")
    default_pids: int = Field(256, gt=0, description="Processes and threads per exec, unless asked.")
    max_pids: int = Field(4096, gt=0, description="Most processes and threads an exec may ask for.")
    default_cpu_cores: float = Field(1.0, gt=0, description="CPU quota per exec in cores, unless asked.")
    max_cpu_cores: float = Field(2.0, gt=0, description="Largest CPU quota an exec may ask for, in cores.")
    default_disk_mb: int = Field(1024, gt=0, description="Workspace quota per sandbox in MiB, unless asked.")
    max_disk_mb: int = Field(10240, gt=0, description="Largest workspace quota a sandbox may ask for, in MiB.")
    workspace_inodes: int = Field(200_000, gt=0, description="Most files and folders one workspace may hold.")
    workspace_quota: Literal["auto", "volume", "walk"] = Field(
        "auto",
        description="How the workspace disk and file quota is enforced: 'volume' (each workspace is its own ext4 "
        "image on a loop device; writes past it fail with ENOSPC; start-up fails if loop devices do not work), "
        "'walk' (a fallback: the workspace is measured about once a second and an over-quota run is stopped), or "
        "'auto' (volume where it works, else walk with a warning).",
    )
    tmp_mb: int = Field(256, gt=0, description="Size of each run's private /tmp (tmpfs, counted as memory), in MiB.")
    warm_interpreter: bool = Field(
        True,
        description="Keep a warm Python interpreter per sandbox (in its own jail) that has imported the packages "
        "the detection found and forks each later `.py` exec from there; false: every exec starts cold.",
    )
    warm_idle_seconds: float = Field(
        300.0, gt=0, description="A sandbox's warm interpreter is stopped after this long without an exec."
    )
    step_timings: bool = Field(
        False,
        description="Log one `exec steps` line per exec request: when each step of it ended, in ms since the "
        "request arrived (the exec profile of `python -m bench --only profile`). Off: no line, no timing.",
    )
    max_file_mb: int = Field(1024, gt=0, description="Largest single file a run may write (RLIMIT_FSIZE), in MiB.")
    open_files: int = Field(1024, ge=16, description="Open file descriptors per process (RLIMIT_NOFILE).")
    install_memory_mb: int = Field(4096, gt=0, description="Memory for each install jail, in MiB.")
    install_max_file_mb: int = Field(
        4096,
        gt=0,
        description="Largest single file an install may write (RLIMIT_FSIZE), in MiB: wheels ship files over the "
        "run limit (tensorflow's libtensorflow_cc.so.2 is 1.02 GiB).",
    )
    default_ttl_seconds: float | None = Field(
        None, gt=0, description="Idle TTL for sandboxes that ask for none; unset means persistent."
    )
    reaper_interval_seconds: float = Field(30.0, gt=0, description="How often expired sandboxes are reaped.")
    uid_base: int = Field(
        200_000, ge=1000, description="First host uid of the per-sandbox uid pool; sandboxes never share one."
    )
    uid_count: int = Field(60_000, gt=0, description="Size of the per-sandbox uid pool.")
    max_sandboxes_per_tenant: int = Field(
        1000, ge=1, description="Most live sandboxes one tenant may hold, so no tenant can take the whole uid pool."
    )
    max_residents_per_sandbox: int = Field(
        8,
        ge=1,
        description="Most long-lived processes (background processes, code contexts) one sandbox may run at once; "
        "each has its own cgroup with the sandbox's limits.",
    )
    process_lifetime_seconds: float = Field(
        3600.0, gt=0, description="Lifetime of a background process that asks for none; past it, it is stopped."
    )
    max_process_lifetime_seconds: float = Field(
        86_400.0, gt=0, description="Longest lifetime a background process may ask for ('timeout_seconds')."
    )
    resident_log_bytes: int = Field(
        1_048_576, gt=0, description="How much of a long-lived process's newest output is kept (its log), in bytes."
    )
    jail_uid: int = Field(1000, ge=1, description="The unprivileged uid (and gid) code sees inside the jail.")
    isolation: Isolation = Field(
        "bwrap",
        description="Isolation tier of sandboxes created without one: 'bwrap' (namespaces, mounts and seccomp on the "
        "host kernel) or 'gvisor' (the same, with every system call served by gVisor's kernel, runsc; start-up "
        "fails when runsc cannot start a sandbox here).",
    )
    install_isolation: Isolation = Field(
        "bwrap",
        description="Isolation tier of install jails, where third-party build scripts run: 'bwrap' or 'gvisor'.",
    )
    runsc: Path | None = Field(
        None, description="The runsc binary of the gvisor tier; unset: 'runsc' found on PATH (make runsc installs it)."
    )
    gvisor_platform: Literal["ptrace", "kvm"] = Field(
        "ptrace",
        description="How runsc's kernel traps the code's system calls: 'ptrace' works everywhere; 'kvm' needs "
        "/dev/kvm and nested virtualisation (it can hang where that is missing).",
    )
    builder_uid: int = Field(
        199_999, ge=1000, description="Host uid that runs installers (install jails); never a sandbox's uid."
    )
    egress_allow: str = Field(
        "",
        description="Server-wide default egress allowlist for sandboxes' code: comma-separated host[:port] (443 "
        "implied). Empty by default: dependencies install server-side, and a registry reachable from user code "
        "is a way out for its secrets (a publish is an upload).",
    )
    registry_allow: str = Field(
        ",".join(DEFAULT_REGISTRIES),
        description="Hosts install jails may reach: the official registries, comma-separated host[:port].",
    )
    egress_trusted_networks: str = Field(
        "",
        description="Comma-separated CIDRs the egress proxy may connect to although they are not global "
        "(e.g. a TLS-intercepting gateway that registry names resolve to).",
    )
    egress_upstream_proxy: str = Field(
        "",
        description="An http://host:port forward proxy every allowed egress tunnel leaves through (CONNECT), for "
        "hosts that reach registries only through one (a Kubernetes sandbox pod: the cloche-egress service). The "
        "allowlist is still cloche's; the upstream resolves the names. Empty: connect directly.",
    )
    egress_trust_registry_addresses: bool = Field(
        True,
        description="Also trust the exact addresses the registry names resolve to at start-up, even if not "
        "global; loopback, link-local and metadata addresses are never trusted.",
    )
    secrets_key: SecretStr | None = Field(  # SecretStr: never shown by repr or a settings dump
        None,
        description="Key that seals secrets at rest: 32 bytes in URL-safe base64. Unset: the key file "
        "<data_dir>/secrets.key (created 0600 at first start; back it up with the database, or secrets are lost).",
    )
    python_index_url: str = Field("https://pypi.org/simple", description="Python package index installers use.")
    python_wheel_dir: Path | None = Field(
        None, description="A local folder of wheels used instead of the index (offline hosts, tests)."
    )
    allow_unknown_imports: bool = Field(
        False,
        description="Install scanned imports no mapping vouches for, by exact name (slopsquatting risk).",
    )
    package_min_age_days: float = Field(
        90.0,
        ge=0,
        description="A package that no shipped ranking vouches for (Python's long tail, npm packages off the "
        "popularity list) is installed only when its first release is at least this many days old: freshly "
        "registered names are how slopsquatting works.",
    )
    pypi_json_url: str = Field(
        "https://pypi.org/pypi",
        description="PyPI's JSON API, asked (a few cached look-ups per unknown import) before a long-tail "
        "project is installed.",
    )
    npm_registry: str = Field(
        "https://registry.npmjs.org/",
        description="npm registry Node installs use; a file:// folder is bound read-only into install jails.",
    )
    go_proxy: str = Field(
        "https://proxy.golang.org",
        description="GOPROXY for Go module downloads; a file:// module proxy folder (tests, offline mirrors) is "
        "bound read-only into install jails.",
    )
    go_sumdb: str = Field(
        "sum.golang.org",
        description="GOSUMDB that verifies Go modules missing from go.sum; 'off' only for a trusted local GOPROXY.",
    )
    maven_repository: str = Field(
        "https://repo.maven.apache.org/maven2",
        description="Maven repository Java dependencies are resolved from; a file:// repository folder is bound "
        "read-only into install jails.",
    )
    license_deny: str = Field(
        "",
        description="Comma-separated SPDX license ids no installed package may carry (e.g. AGPL-3.0-only); "
        "an install that would bring one in fails with install_failed.",
    )
    resolution_ttl_seconds: float = Field(
        3600.0,
        ge=0,
        description="How long a resolved lock is reused for identical needs (same detection fingerprint) in "
        "new sandboxes before the resolver runs again (unpinned requirements pick up new releases after it).",
    )
    failed_build_ttl_seconds: float = Field(
        600.0,
        ge=0,
        description="How long a lock whose build failed is answered with that failure, without building again "
        "(changed needs are another lock and build at once; 0 retries every time).",
    )
    env_gc_grace_seconds: float = Field(
        86_400.0, ge=0, description="How long an environment no sandbox references is kept before removal."
    )
    gc_interval_seconds: float = Field(3_600.0, gt=0, description="How often unreferenced environments are pruned.")
    database_url: SecretStr | None = Field(  # SecretStr: the URL may carry a password
        None,
        description="Metadata database shared by several API servers and node agents: "
        "'postgresql://user:password@host:port/db' (or a libpq key=value string). Unset: the embedded SQLite file "
        "<data_dir>/cloche.db. The schema is migrated at start-up.",
    )
    node_name: str = Field(
        "local",
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="This node's name, recorded as the placement of the sandboxes whose workspaces it holds. "
        "Each server or agent that runs sandboxes against one shared database needs its own.",
    )
    agents: str = Field(
        "",
        description="Static node agents this API server places sandboxes on: comma-separated 'name=url' "
        "(e.g. 'a1=http://10.0.0.5:8500'), each name the agent's CLOCHE_NODE_NAME. Empty: sandboxes run in this "
        "process (the single-node default). Needs a shared database (CLOCHE_DATABASE_URL).",
    )
    agent_token: SecretStr | None = Field(
        None,
        description="Shared secret between API servers and node agents: agents refuse a request without it "
        "(as 'Authorization: Bearer <token>'). Required for an agent bound to a non-loopback address.",
    )
    backend: Literal["static", "kubernetes"] = Field(
        "static",
        description="Where sandboxes live: 'static' (this process's own node, or the node agents CLOCHE_AGENTS "
        "lists) or 'kubernetes' (a pod per sandbox running the node agent, its workspace on a PersistentVolumeClaim; "
        "the kube_* settings; needs the 'kubernetes' extra and a shared database).",
    )
    kube_config: Path | None = Field(
        None,
        description="Kubeconfig file of the cluster sandbox pods go to; unset: the pod's service account "
        "(in-cluster), else the usual ~/.kube/config.",
    )
    kube_namespace: str = Field("cloche", min_length=1, description="Namespace of the sandbox pods and their objects.")
    kube_image: str = Field(
        "ghcr.io/example/cloche:0.1.0", min_length=1, description="Image of the sandbox pods (cloche with its jail)."
    )
    kube_secret: str = Field(
        "cloche-secrets",
        min_length=1,
        description="Secret the sandbox pods read 'database-url', 'agent-token' and 'secrets-key' from.",
    )
    kube_agent_config: str = Field(
        "cloche-agent",
        min_length=1,
        description="ConfigMap of further CLOCHE_* settings given to every sandbox pod (limits, registries); "
        "optional: a missing one gives the defaults.",
    )
    kube_agent_port: int = Field(8500, ge=1, le=65535, description="Port the node agent in a sandbox pod serves.")
    kube_storage_class: str | None = Field(
        None, description="StorageClass of the sandbox workspace claims; unset: the cluster's default."
    )
    kube_volume_gb: int = Field(
        10, gt=0, description="Size of each sandbox's claim (its workspace and the environments built in it), GiB."
    )
    kube_runtime_class: str | None = Field(
        None,
        description="runtimeClassName of sandbox pods (e.g. 'gvisor' where the cluster has one); unset: the "
        "cluster's default runtime, the jail inside the pod alone.",
    )
    kube_environments_claim: str | None = Field(
        None,
        description="A ReadOnlyMany claim of environments built by install pods, mounted read-only in every "
        "sandbox pod at /var/lib/cloche-environments; unset: none.",
    )
    kube_egress_port: int = Field(
        3128, ge=1, le=65535, description="Port of the egress proxy pods (cloche-egress) sandbox pods may reach."
    )
    kube_database_cidrs: str = Field(
        "",
        description="Comma-separated CIDRs of the shared database, which sandbox pods' NetworkPolicy lets them "
        "reach (on kube_database_port); empty: no database rule (add your own policy).",
    )
    kube_database_port: int = Field(5432, ge=1, le=65535, description="Port of the shared database.")
    kube_idle_seconds: float = Field(
        600.0,
        gt=0,
        description="A sandbox pod unused this long is deleted (scale to zero); its claim stays, and the next "
        "request starts a pod on it again with the workspace as it was.",
    )
    kube_ready_seconds: float = Field(
        180.0,
        gt=0,
        description="How long a new sandbox pod may take to become ready; past it the request answers 503 "
        "agent_unavailable (a new sandbox's objects are removed).",
    )
    context_idle_seconds: float = Field(
        1800.0, gt=0, description="A code context unused this long is stopped (its kernel and variables are gone)."
    )
    context_lifetime_seconds: float = Field(
        86_400.0, gt=0, description="Longest a code context's kernel lives, used or not; then it is stopped."
    )
    max_contexts_per_sandbox: int = Field(8, ge=1, description="Most code contexts (kernels) one sandbox may hold.")
    context_start_seconds: float = Field(
        120.0, gt=0, description="How long a code context's kernel may take to start before it is given up."
    )
    code_results_limit_bytes: int = Field(
        16 * 1_048_576, gt=0, description="Cap on the displayed results (images, HTML, ...) one cell returns."
    )

    @field_validator("egress_upstream_proxy")
    @classmethod
    def _upstream_proxy_is_a_url(cls, value: str) -> str:
        if value:
            UpstreamProxy.parse(value)  # its ValueError names what is wrong with the URL
        return value

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @staticmethod
    def host_list(value: str) -> tuple[str, ...]:
        return tuple(part.strip() for part in value.split(",") if part.strip())

    def agent_urls(self) -> dict[str, str]:
        """``CLOCHE_AGENTS`` as node name -> base URL, in the order given."""
        agents: dict[str, str] = {}
        for entry in self.host_list(self.agents):
            name, sep, url = entry.partition("=")
            if not sep or not name.strip() or not url.strip().startswith(("http://", "https://")):
                raise ValueError(f"CLOCHE_AGENTS entry {entry!r} is not 'name=http(s)://host:port'")
            agents[name.strip()] = url.strip()
        return agents

    def parsed_api_keys(self) -> dict[str, str]:
        """Map API key -> tenant. A bare key's tenant is named by a hash of the whole key (never a piece of it)."""
        lines = [part.strip() for part in self.api_keys.split(",")]
        if self.api_keys_file is not None:
            lines += [ln.strip() for ln in self.api_keys_file.read_text().splitlines()]
        keys: dict[str, str] = {}
        for line in lines:
            if not line or line.startswith("#"):
                continue
            tenant, sep, key = line.partition(":")
            if not sep:
                key, tenant = tenant, bare_key_tenant(tenant)
            keys[key] = tenant
        return keys
