"""Wire models: what the HTTP API accepts and returns. Requests forbid unknown fields."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cloche.jail.egress_policy import EgressPolicy
from cloche.jail.profile import Isolation

Language = Literal["python", "node", "go", "java"]
RunStatus = Literal[
    "running", "succeeded", "failed", "timed_out", "oom_killed", "output_limit", "install_failed", "killed"
]
SandboxStatus = Literal["ready", "running"]

ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"

# Upper bounds of what a request may ask, far beyond any server maximum (asks up to them are clamped to the
# server's): they keep every accepted number finite and representable in SQLite and in datetime arithmetic.
LONGEST_SECONDS = 10 * 365 * 86_400  # ten years
MOST_MIB = 1 << 30  # 1 PiB
MOST_BYTES = 1 << 50
MOST_PIDS = 1 << 22  # the kernel's largest pid_max
MOST_CORES = 4096


class Strict(BaseModel):
    """Base for request bodies: unknown fields are a 422, not silently ignored; infinities and NaN are refused."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _check_env(env: dict[str, str] | None) -> None:
    import re

    for key, value in (env or {}).items():
        if not re.match(ENV_NAME_PATTERN, key):
            raise ValueError(f"env name {key!r} is not a valid variable name")
        if "\0" in value:
            raise ValueError(f"env value for {key!r} contains a NUL byte")


def seconds(description: str, **options: Any) -> Any:
    """A duration a client may ask for (omitted: the server's default): over zero, at most ``LONGEST_SECONDS``."""
    return Field(None, gt=0, le=LONGEST_SECONDS, description=description, **options)


class Limits(Strict):
    """Resource limits a sandbox or an exec asks for; the server clamps each to its maximum."""

    timeout_seconds: float | None = seconds("Wall clock per exec, in seconds.")
    output_bytes: int | None = Field(None, gt=0, le=MOST_BYTES, description="Cap per stream kept for a run, in bytes.")
    memory_mb: int | None = Field(None, gt=0, le=MOST_MIB, description="Memory (RAM + swap) per exec, in MiB.")
    pids: int | None = Field(None, ge=8, le=MOST_PIDS, description="Processes and threads per exec.")
    cpu_cores: float | None = Field(None, gt=0, le=MOST_CORES, description="CPU quota per exec, in cores.")
    disk_mb: int | None = Field(
        None, gt=0, le=MOST_MIB, description="Workspace quota for the sandbox, in MiB (create only)."
    )


def _secret_names() -> Any:
    return Field(
        None,
        max_length=64,
        description="Names of the tenant's secrets (POST /v1/secrets) given to the run(s) as environment "
        "variables, masked as *** in every output.",
    )


def _check_names(names: list[str] | None) -> None:
    import re

    for name in names or []:
        if not re.match(ENV_NAME_PATTERN, name):
            raise ValueError(f"secret name {name!r} is not a valid variable name")


class CreateSecret(Strict):
    name: str = Field(pattern=ENV_NAME_PATTERN, description="Environment variable name the value is given as.")
    value: str = Field(
        min_length=8, max_length=65_536, description="The value; at least 8 characters, so masking it is meaningful."
    )
    hosts: list[str] = Field(
        default_factory=list,
        max_length=16,
        description="Hosts ('host' or 'host:port') the secret is meant for: a run holding it gets tunnels to "
        "them, in addition to its sandbox's egress.",
    )

    @field_validator("value")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        if "\0" in value or value.encode(errors="ignore").decode() != value:  # NUL, or unpaired surrogates
            raise ValueError("a secret value may not contain a NUL byte or unpaired surrogates")
        return value

    @field_validator("hosts")
    @classmethod
    def _valid_hosts(cls, hosts: list[str]) -> list[str]:
        EgressPolicy(tuple(hosts))
        return hosts


class SecretInfo(BaseModel):
    name: str
    hosts: list[str] = Field(description="Hosts a run holding the secret may reach.")
    created_at: datetime = Field(description="When the value was last set (UTC).")


class SecretList(BaseModel):
    secrets: list[SecretInfo] = Field(description="The tenant's secrets, by name; values are never returned.")


class CreateSandbox(Strict):
    language: Language | None = Field(
        None, description="Language of the sandbox; omitted means it follows the first file executed."
    )
    ttl_seconds: float | None = seconds(
        "Idle time after which the sandbox is deleted; omitted uses the server default."
    )
    limits: Limits | None = Field(None, description="Default limits for every exec in this sandbox.")
    env: dict[str, str] | None = Field(None, description="Environment variables set for every exec.")
    egress: list[str] | None = Field(
        None,
        description="Hosts ('host' or 'host:port', 443 implied) the sandbox's code may reach, as opaque tunnels: "
        "such a host can receive anything the code sends it. Omitted: the server default (none; dependencies "
        "install server-side, and refused attempts are listed in egress_denied). [] means no network at all.",
        max_length=64,
    )
    secrets: list[str] | None = _secret_names()
    isolation: Isolation | None = Field(
        None,
        description="Isolation tier of every run in the sandbox: 'bwrap' (namespaces, mounts and a seccomp filter "
        "on the host kernel) or 'gvisor' (the same, with every system call served by gVisor's kernel: slower to "
        "start, no host kernel reachable). Omitted: the server default. A tier the server cannot run is a 422.",
    )

    @model_validator(mode="after")
    def _valid_env(self) -> CreateSandbox:
        _check_env(self.env)
        _check_names(self.secrets)
        return self

    @field_validator("egress")
    @classmethod
    def _valid_egress(cls, hosts: list[str] | None) -> list[str] | None:
        EgressPolicy(tuple(hosts or ()))  # the proxy's own parser; its ValueError names the entry and the fault
        return hosts


class Sandbox(BaseModel):
    id: str = Field(description="Sandbox id, 'sb_' followed by 24 hex digits.")
    language: Language | None = Field(description="Language, or null until the first exec decides it.")
    status: SandboxStatus = Field(description="'running' while an exec is in flight, else 'ready'.")
    created_at: datetime = Field(description="Creation time (UTC).")
    last_used_at: datetime = Field(description="Last create, file write or exec (UTC); idleness counts from it.")
    expires_at: datetime | None = Field(description="When the idle TTL runs out; null means persistent.")
    ttl_seconds: float | None = Field(description="Idle TTL in seconds; null means persistent.")
    limits: Limits = Field(description="Default limits for execs in this sandbox.")
    env_keys: list[str] = Field(description="Names of the sandbox-level environment variables (values hidden).")
    egress: list[str] = Field(description="Hosts the sandbox's code may reach ([] means no network).")
    secrets: list[str] = Field(default_factory=list, description="Names of the secrets every exec gets.")
    isolation: Isolation = Field("bwrap", description="Isolation tier of every run in the sandbox.")


class SandboxList(BaseModel):
    sandboxes: list[Sandbox]


class FileEntry(BaseModel):
    path: str = Field(description="Path relative to the workspace root.")
    type: Literal["file", "dir", "symlink", "other"]
    size: int
    sha256: str | None = Field(description="Content hash for regular files; null otherwise.")
    mtime: float = Field(description="Modification time, seconds since the epoch.")


class FilesWritten(BaseModel):
    filename: str | None = Field(description="Path written, when exactly one file was uploaded (seed format).")
    files: list[FileEntry]


class FileList(BaseModel):
    path: str
    files: list[FileEntry]


class ExecRequest(Strict):
    # The one-target rule below, as the OpenAPI document states it: exactly one of the two is a string.
    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {"required": ["filename"], "properties": {"filename": {"type": "string"}}},
                {"required": ["command"], "properties": {"command": {"type": "string"}}},
            ]
        }
    )

    filename: str | None = Field(None, description="Workspace file to run; the runner follows the extension.")
    command: str | None = Field(None, description="Shell command run with /bin/sh -c in the workspace.")
    args: list[str] = Field(default_factory=list, description="Extra arguments (filename form only).")
    stdin: str | None = Field(None, description="Text fed to the program's standard input.")
    env: dict[str, str] | None = Field(None, description="Extra environment variables for this exec.")
    timeout_seconds: float | None = seconds(
        "Wall clock; clamped to the server maximum. With 'background': the process's lifetime."
    )
    limits: Limits | None = Field(None, description="Limits for this exec; each clamped to the server maximum.")
    secrets: list[str] | None = _secret_names()
    background: bool = Field(
        False,
        description="Start a process that outlives the request (a server, a watcher) and answer at once with it; "
        "its ports are reachable at /v1/sandboxes/{id}/ports/{port}/.",
    )

    @model_validator(mode="after")
    def _one_target(self) -> ExecRequest:
        if (self.filename is None) == (self.command is None):
            raise ValueError("give exactly one of 'filename' or 'command'")
        if self.command is not None and self.args:
            raise ValueError("'args' goes with 'filename'; put arguments in 'command' instead")
        if self.command is not None and not self.command.strip():
            raise ValueError("'command' is empty")
        if any("\0" in a for a in self.args) or "\0" in (self.command or ""):
            raise ValueError("arguments may not contain NUL bytes")
        if self.background and self.stdin is not None:
            raise ValueError("'stdin' cannot go with 'background': a background process reads no input")
        _check_env(self.env)
        _check_names(self.secrets)
        return self


class InstalledPackage(BaseModel):
    name: str
    version: str


class ResolvedImport(BaseModel):
    module: str = Field(description="The import as written (a scanned specifier or module).")
    package: str | None = Field(None, description="The package installed for it.")
    version: str | None = Field(None, description="The version asked for ('*': the newest that fits).")
    source: str | None = Field(None, description="What vouched for it, e.g. 'popularity list', 'registry facts'.")
    reason: str | None = Field(None, description="Why, in words: the facts behind the choice, any back-off.")


class RecoveryStep(BaseModel):
    action: Literal["next_provider", "runtime_need", "version_backoff", "extra", "prebuilt", "display"] = Field(
        description="next_provider: the chosen project did not ship the module, the next by download rank was "
        "tried; runtime_need: a package imports something it does not declare; version_backoff: the newest "
        "release lacks an imported name; extra: the package's error asked for it; prebuilt: a project that "
        "publishes only a source archive was locked with its reviewed substitute, which ships the same module as "
        "wheels, in its place (before the check); display: the import needs an X display, imported under a virtual "
        "one, and every run of the environment starts one of its own in its jail (requirement empty)."
    )
    module: str = Field(description="The import that failed.")
    requirement: str = Field(description="What was installed for it (a requirement).")
    outcome: Literal["fixed", "failed", "not_installable"] = Field(
        description="fixed: the import then imported; failed: it still did not; not_installable: no lock or build."
    )
    detail: str = Field("", description="Why this step, and the error that remained.")


class ImportFailure(BaseModel):
    module: str = Field(description="An import of the entry that still fails in the environment.")
    error: str = Field(description="The error the check saw.")
    names: list[str] = Field(default_factory=list, description="Names 'from module import ...' lacked.")


class InstallReport(BaseModel):
    source: str = Field(
        description="Where the needs came from: pyproject.toml, requirements.txt, inline, scan, package.json, ..."
        " or none; sandbox for a command that starts no entry point (the sandbox's accumulated needs)."
    )
    requested: list[str] = Field(description="Requirements as declared (or mapped from scanned imports).")
    resolved: list[ResolvedImport] = Field(
        default_factory=list, description="How each scanned import was vouched for (scans only)."
    )
    installed: list[InstalledPackage] = Field(description="Packages this exec newly installed for the sandbox.")
    reused_environment: bool = Field(description="True when an existing environment was used as-is.")
    duration_ms: int = Field(0, description="Time spent detecting and installing.")
    environment: str | None = Field(None, description="Environment store key the run used.")
    error: str | None = Field(None, description="The installer's error when the install failed.")
    verified: bool | None = Field(
        None,
        description="Whether this exec's new environment imports everything the entry needs: true (sealed and "
        "reused from now on), false (import_failures; the run used it, but it was neither sealed nor bound), "
        "null (no environment was built and checked by this exec).",
    )
    recovery: list[RecoveryStep] = Field(
        default_factory=list, description="Each step taken to repair imports that failed the check, in order."
    )
    import_failures: list[ImportFailure] = Field(
        default_factory=list, description="Imports still failing after recovery (verified: false)."
    )
    note: str | None = Field(
        None,
        description="Set when the entry's needs could not be combined with the sandbox's other needs, so it ran "
        "with an environment of its own; says what the resolver reported.",
    )


class ImportSuggestion(BaseModel):
    module: str
    suggested: str | None = Field(description="Distribution that provides the module, when known.")


class UnresolvedImport(BaseModel):
    module: str
    hint: str | None


class WarmStart(BaseModel):
    used: bool = Field(description="True when the sandbox's warm interpreter forked the run (its packages imported).")
    reason: str | None = Field(None, description="Why the run started cold instead (null when it ran warm).")


class ExecResult(BaseModel):
    run_id: str = Field(description="Run id, 'run_' followed by 24 hex digits.")
    status: RunStatus
    exit_code: int | None = Field(description="The program's exit code; null when cloche stopped it.")
    output: str = Field(description="Both streams in the order they arrived, as a terminal would show them.")
    stdout: str
    stderr: str
    duration_ms: int
    truncated: bool = Field(description="True when a stream hit the output cap and was cut.")
    install: InstallReport | None = Field(None, description="Dependency step of this exec (filename execs).")
    unlisted_imports: list[ImportSuggestion] = Field(
        default_factory=list, description="Imports the manifest does not cover (not installed)."
    )
    unresolved_imports: list[UnresolvedImport] = Field(
        default_factory=list,
        description="Scanned imports no trustworthy distribution provides (not installed).",
    )
    egress_denied: list[str] = Field(default_factory=list, description="Hosts the run tried to reach and was refused.")
    warm: WarmStart | None = Field(
        None, description="For a `.py` exec: whether the sandbox's warm interpreter forked it, and if not why."
    )
    error: str | None = Field(
        None, description="Why cloche or a limit ended the run (killed, timed out, ...); null when the program ended."
    )


class RunRecord(ExecResult):
    sandbox_id: str
    argv: list[str] = Field(description="The command line run inside the jail.")
    started_at: datetime
    finished_at: datetime | None


class RunSummary(BaseModel):
    run_id: str
    status: RunStatus
    exit_code: int | None
    argv: list[str]
    started_at: datetime
    finished_at: datetime | None
    duration_ms: int


class RunList(BaseModel):
    runs: list[RunSummary]


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    jail: str = Field(description="bubblewrap version the jail uses.")


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine code (docs/api.md lists them by status).")
    message: str = Field(description="What went wrong, for a person, with how to fix it where cloche knows.")


class ErrorBody(BaseModel):
    """Every error answer of cloche's own API."""

    error: ErrorDetail


class SeedErrorBody(BaseModel):
    """Error answers under /jhansi, as the seed's server gave them: a message, or FastAPI's validation list."""

    detail: str | list[dict[str, Any]]
