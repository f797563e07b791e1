"""Helpers the Node, Go and Java ecosystems share: source listing that skips caches, and staging a toolchain
where jails can bind it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cloche.ecosystems.common import installer_error, reachable, source_files, traversable
from cloche.ecosystems.registry import EcosystemRegistry
from cloche.jail.runner import Outcome, RunResult


def test_source_files_skip_caches_and_dot_folders(tmp_path: Path) -> None:
    for rel in ["main.go", "lib/a.go", ".cloche/go/cache/x.go", "node_modules/p/i.go", "vendor/v.go", "_x/y.go"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("package x\n")
    (tmp_path / "link.go").symlink_to(tmp_path / "main.go")
    assert source_files(tmp_path, "", ".go") == ["lib/a.go", "main.go"]
    assert source_files(tmp_path, "lib", ".go") == ["lib/a.go"]


def test_reachable_stages_only_what_jails_cannot_traverse(tmp_path: Path) -> None:
    private = tmp_path / "private"
    (private / "tool" / "bin").mkdir(parents=True)
    (private / "tool" / "bin" / "go").write_text("#!/bin/sh\n")
    (private / "script.py").write_text("print(1)\n")
    private.chmod(0o700)
    stage = tmp_path / "stage"
    staged_dir = reachable(private / "tool", stage / "tool")
    staged_file = reachable(private / "script.py", stage / "script.py")
    assert staged_dir == stage / "tool" and (staged_dir / "bin" / "go").read_text() == "#!/bin/sh\n"
    assert staged_file.read_text() == "print(1)\n" and staged_file.stat().st_mode & 0o004
    before = (staged_dir / "bin" / "go").stat().st_ino
    assert reachable(private / "tool", stage / "tool") == staged_dir  # unchanged source: no new copy
    assert (staged_dir / "bin" / "go").stat().st_ino == before
    os.utime(private / "script.py", (1, 1))  # a changed source is staged again
    assert reachable(private / "script.py", stage / "script.py").stat().st_mtime == 1
    private.chmod(0o755)
    assert traversable(Path("/usr/bin/env"))  # a reachable source is bound where it is
    assert reachable(Path("/usr/bin/env"), stage / "env") == Path("/usr/bin/env")


def test_go_and_java_are_no_longer_planned() -> None:
    from cloche.ecosystems.go.ecosystem import GoEcosystem
    from cloche.ecosystems.java.ecosystem import JavaEcosystem
    from cloche.ecosystems.node.ecosystem import NodeEcosystem

    registry = EcosystemRegistry([NodeEcosystem(), GoEcosystem(), JavaEcosystem()])
    assert registry.for_entry("cmd/main.go").name == "go"
    assert registry.for_entry("App.java").name == "java"
    assert registry.for_entry("x.mjs").name == "node"


def test_no_environment_is_mounted_where_a_workspace_path_could_be(tmp_path: Path) -> None:
    # Every ecosystem's install and run mounts lie outside /sandbox, so a user's `deps/` or `node_modules/` is never
    # hidden; the jail profile itself refuses a mount that would hide workspace files.
    from cloche.ecosystems.base import Detection
    from cloche.ecosystems.go.ecosystem import GoEcosystem, find_goroot
    from cloche.ecosystems.java.ecosystem import JavaEcosystem
    from cloche.ecosystems.node.ecosystem import NodeEcosystem
    from cloche.ecosystems.python.ecosystem import PythonEcosystem
    from cloche.jail.profile import SANDBOX_DIR, JailProfile, Mount
    from cloche.store.envstore import META, companion_key

    environment = tmp_path / "envs" / "key"
    (environment / "node_modules").mkdir(parents=True)
    (environment / "classpath.txt").write_text("lib/a.jar\n")
    companion = environment.with_name(companion_key(environment.name))
    companion.mkdir()
    (companion / META).write_text("{}")
    ecosystems = [PythonEcosystem(), NodeEcosystem(), GoEcosystem(find_goroot()), JavaEcosystem()]
    for ecosystem in ecosystems:
        detection = Detection(ecosystem.name, "none", (), "f", sys_path=("src",))
        mounts = ecosystem.exec_env(environment, detection).mounts
        assert mounts, ecosystem.name
        for mount in mounts:
            assert not mount.dest.startswith(SANDBOX_DIR), (ecosystem.name, mount.dest)
        assert not ecosystem.env_mount.startswith(SANDBOX_DIR)
        JailProfile(name="exec", host_uid=1, workspace=tmp_path, mounts=mounts)
    for dest in (SANDBOX_DIR, f"{SANDBOX_DIR}/deps"):
        with pytest.raises(ValueError, match="would hide workspace files"):
            JailProfile(name="exec", host_uid=1, mounts=(Mount("ro-bind", dest, tmp_path),))


def _ended(status: Outcome, exit_code: int | None, stderr: str = "") -> RunResult:
    return RunResult(status, exit_code, "", stderr, stderr, False, 90_000)


@pytest.mark.parametrize(
    ("result", "says"),
    [
        # exit codes as the jail reports a signal (tests/jail/test_rlimits.py: 128 + the signal)
        (_ended("failed", 128 + 25), "killed by SIGXFSZ: a file larger than the install jails' file-size limit"),
        (_ended("failed", 128 + 9), "killed by SIGKILL: usually the install jail's memory limit"),
        (_ended("oom_killed", None), "ran out of memory (CLOCHE_INSTALL_MEMORY_MB)"),
        (_ended("timed_out", None), "ran out of time after 90 s"),
    ],
)
def test_an_installer_that_leaves_no_message_is_reported_by_how_it_ended(result: RunResult, says: str) -> None:
    assert says in installer_error(result)


def test_an_installer_error_keeps_its_last_lines_and_adds_nothing_to_a_plain_exit() -> None:
    stderr = "\n".join(f"line {n}" for n in range(40)) + "\n\n  error: no matching distribution\n"
    message = installer_error(_ended("failed", 1, stderr))
    assert message.splitlines()[-1] == "  error: no matching distribution" and "line 9\n" not in message
    assert "killed" not in message
    assert installer_error(_ended("failed", 1)) == "the installer failed without a message"
    assert installer_error(_ended("failed", 153, "Downloading tensorflow\n")).splitlines() == [
        "Downloading tensorflow",
        "the installer was killed by SIGXFSZ: a file larger than the install jails' file-size limit "
        "(CLOCHE_INSTALL_MAX_FILE_MB)",
    ]
