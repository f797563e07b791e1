"""The ecosystem contract: mandatory members are checked when a class is defined, optional ones default to
"not provided", and each language declares what it departs from the common pipeline with."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloche.ecosystems.base import (
    Component,
    Detection,
    Ecosystem,
    ExecEnv,
    InstallJail,
    Lock,
    Quirk,
)
from cloche.ecosystems.go.ecosystem import GoEcosystem
from cloche.ecosystems.java.ecosystem import JavaEcosystem
from cloche.ecosystems.node.ecosystem import NodeEcosystem
from cloche.ecosystems.python.ecosystem import PythonEcosystem
from cloche.service.records import DependencyRecord


def _incomplete() -> type[Ecosystem]:
    class NoMount(Ecosystem):
        name = "nomount"
        extensions = (".x",)

        def command(self, entry: str, args: list[str]) -> list[str]:
            return [entry, *args]

        def detect(self, root: Path, entry: str) -> Detection:
            return Detection(self.name, "none", (), "")

        def abi(self) -> str:
            return "x"

        async def resolve(self, detection: Detection, jail: InstallJail) -> Lock:
            return Lock("", ())

        async def build(self, lock: Lock, jail: InstallJail) -> list[Component]:
            return []

        def inventory(self, environment: Path, lock: Lock, provenance: str) -> list[Component]:
            return []

        def exec_env(self, environment: Path, detection: Detection) -> ExecEnv:
            return ExecEnv()

    return NoMount


def test_a_missing_mandatory_member_is_refused_at_definition() -> None:
    with pytest.raises(TypeError, match="env_mount"):
        _incomplete()


def test_optional_capabilities_and_quirks_are_declared(tmp_path: Path) -> None:
    offline = PythonEcosystem(wheel_dir=tmp_path)
    online = PythonEcosystem()
    assert offline.install_offline and [m.source for m in offline.install_mounts] == [tmp_path]
    assert not online.install_offline and online.install_mounts == ()
    assert online.companion is not None and NodeEcosystem().companion is None
    assert "UV_CACHE_DIR" in online.installer_env() and "npm_config_cache" in NodeEcosystem().installer_env()
    none = Detection("x", "none", (), "")
    assert not online.needs_environment(none) and not NodeEcosystem().needs_environment(none)
    go, java = GoEcosystem(None), JavaEcosystem()
    assert Quirk.ENVIRONMENT_WITHOUT_PACKAGES in go.quirks and java.needs_environment(none)
    assert "GOMODCACHE" in go.installer_env() and java.installer_env() == {}


def test_dependency_record_reads_runs_stored_before_it() -> None:
    stored = {
        "ecosystem": "python",
        "toolchain": {"python": "cpython-3.11"},
        "install": {
            "source": "scan",
            "requested": ["six"],
            "installed": [{"name": "six", "version": "1.16.0"}],
            "reused_environment": False,
            "duration_ms": 12,
        },
        "unlisted_imports": [],
        "unresolved_imports": [{"module": "zzqx", "hint": "add it"}],
        "lock": "six==1.16.0\n",
        "components": [
            {
                "name": "six",
                "version": "1.16.0",
                "purl": "pkg:pypi/six@1.16.0",
                "license": "MIT",
                "hashes": ["sha256:ab"],
                "provenance": "scan",
            }
        ],
        "env_key": "python-abc",
        "egress_denied": ["example.com"],
    }
    record = DependencyRecord.from_json(stored)
    assert record.install is not None and record.install.installed[0].version == "1.16.0"
    assert record.components[0].hashes == ("sha256:ab",) and record.error is None
    again = record.to_json()
    assert {k: again[k] for k in ("lock", "components", "env_key", "toolchain")} == {
        k: stored[k] for k in ("lock", "components", "env_key", "toolchain")
    }
    assert DependencyRecord.from_json({}).install is None  # a run that never reached the dependency step
