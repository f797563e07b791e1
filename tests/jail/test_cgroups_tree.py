"""Cgroups against fake cgroupfs trees in tmp_path: the v2 code paths on a v1 host, and v1 layouts
this host does not have (co-mounted cpu,cpuacct, no swap accounting). Only file writes are checked;
the kernel's behaviour is covered by test_cgroups.py on the real hierarchy."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cloche.errors import InvalidRequest, JailUnavailable
from cloche.jail import cgroup_base
from cloche.jail.cgroup_base import CgroupLimits
from cloche.jail.cgroups import Cgroups, RunCgroup

MiB = 1 << 20
LIMITS = CgroupLimits(memory_bytes=64 * MiB, pids_max=16, cpu_cores=0.5)

V2_FILES = {
    "cgroup.procs": "",
    "cgroup.subtree_control": "",
    "cgroup.kill": "",
    "cgroup.freeze": "0\n",
    "cgroup.events": "populated 0\nfrozen 0\n",
    "memory.max": "max\n",
    "memory.swap.max": "max\n",
    "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
    "memory.peak": "0\n",
    "pids.max": "max\n",
    "cpu.max": "max 100000\n",
    "cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0\n",
}
V1_FILES = {
    "cgroup.procs": "",
    "tasks": "",
    "memory.limit_in_bytes": "9223372036854771712\n",
    "memory.swappiness": "60\n",
    "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\n",
    "memory.failcnt": "0\n",
    "memory.max_usage_in_bytes": "0\n",
    "pids.max": "max\n",
    "cpu.cfs_period_us": "100000\n",
    "cpu.cfs_quota_us": "-1\n",
    "cpuacct.usage": "0\n",
}


def fake_mkdir(files: dict[str, str]) -> Callable[[Path], None]:
    """What the kernel does on mkdir in cgroupfs: the new group comes with its control files."""

    def mkdir(path: Path) -> None:
        path.mkdir()
        for name, content in files.items():
            (path / name).write_text(content)

    return mkdir


def v2_tree(tmp_path: Path, controllers: str = "cpuset cpu io memory hugetlb pids rdma misc") -> Path:
    root = tmp_path / "cgroup2"
    root.mkdir()
    (root / "cgroup.controllers").write_text(controllers + "\n")
    (root / "cgroup.subtree_control").write_text("")
    mounts = tmp_path / "mounts"
    mounts.write_text(f"sysfs /sys sysfs rw 0 0\ncgroup2 {root} cgroup2 rw,nosuid,nodev,noexec 0 0\n")
    return mounts


@pytest.fixture
def v2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cgroups:
    monkeypatch.setattr(cgroup_base, "make_group", fake_mkdir(V2_FILES))
    return Cgroups.detect("cloche-t/jails", mounts=v2_tree(tmp_path))


def test_v2_detect_enables_controllers_down_to_the_parent(v2: Cgroups, tmp_path: Path) -> None:
    root = tmp_path / "cgroup2"
    assert v2.version == 2
    assert set(v2.dirs) == {"cpu", "memory", "pids"}
    assert set(v2.dirs.values()) == {root / "cloche-t" / "jails"}
    for node in (root, root / "cloche-t", root / "cloche-t" / "jails"):
        assert (node / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"


def test_v2_already_enabled_controllers_are_left_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cgroup_base, "make_group", fake_mkdir(V2_FILES))
    mounts = v2_tree(tmp_path)
    control = tmp_path / "cgroup2" / "cgroup.subtree_control"
    control.write_text("cpu io memory pids\n")
    Cgroups.detect("cloche-t", mounts=mounts)
    assert control.read_text() == "cpu io memory pids\n"


def test_v2_create_writes_every_limit(v2: Cgroups) -> None:
    run = v2.create("run-1", LIMITS)
    try:
        path = run.dirs["memory"]
        assert run.paths == (path,)
        assert (path / "memory.max").read_text() == str(64 * MiB)
        assert (path / "memory.swap.max").read_text() == "0"
        assert (path / "pids.max").read_text() == "16"
        assert (path / "cpu.max").read_text() == "50000 100000"
        assert len(run.procs_fds()) == 1
        run.preexec_attach()  # in a real child this moves it; here it shows what is written
        assert (path / "cgroup.procs").read_text() == "0"
    finally:
        run.close_fds()


def test_v2_without_cpu_or_swap_accounting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = {k: v for k, v in V2_FILES.items() if k not in ("memory.swap.max", "cpu.max")}
    monkeypatch.setattr(cgroup_base, "make_group", fake_mkdir(files))
    groups = Cgroups.detect("cloche-t", mounts=v2_tree(tmp_path, controllers="memory pids io"))
    run = groups.create("run", LIMITS)
    run.close_fds()
    assert set(groups.dirs) == {"memory", "pids"}
    assert not (run.dirs["memory"] / "memory.swap.max").exists()
    assert not (run.dirs["memory"] / "cpu.max").exists()


def test_v2_reports_oom_peak_and_cpu(v2: Cgroups) -> None:
    run = v2.create("run-2", LIMITS)
    run.close_fds()
    path = run.dirs["memory"]
    assert not run.oom_killed()
    (path / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n")
    (path / "memory.peak").write_text("67100000\n")
    (path / "cpu.stat").write_text("usage_usec 1500000\nuser_usec 1000000\n")
    assert run.oom_killed()
    assert run.memory_peak_bytes() == 67_100_000
    assert run.cpu_usage_seconds() == 1.5


def _occupied_until_killed(run: RunCgroup, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake group lists one process until the kill's first look (a kernel empties it on the kill)."""
    listed = iter([{999_999_999}])
    monkeypatch.setattr(run, "pids", lambda: next(listed, set()))


def test_v2_kill_uses_cgroup_kill(v2: Cgroups, monkeypatch: pytest.MonkeyPatch) -> None:
    run = v2.create("run-3", LIMITS)
    run.close_fds()
    _occupied_until_killed(run, monkeypatch)
    assert run.kill(timeout=1)
    assert (run.dirs["memory"] / "cgroup.kill").read_text() == "1"


def test_v2_kill_without_cgroup_kill_freezes_and_thaws(v2: Cgroups, monkeypatch: pytest.MonkeyPatch) -> None:
    run = v2.create("run-4", LIMITS)
    run.close_fds()
    (run.dirs["memory"] / "cgroup.kill").unlink()  # a kernel before 5.14
    (run.dirs["memory"] / "cgroup.events").write_text("populated 0\nfrozen 1\n")
    _occupied_until_killed(run, monkeypatch)
    assert run.kill(timeout=1)
    assert (run.dirs["memory"] / "cgroup.freeze").read_text() == "0"


def test_an_empty_group_is_killed_without_a_write(v2: Cgroups) -> None:
    run = v2.create("run-5", LIMITS)
    run.close_fds()
    assert run.kill(timeout=1)  # nothing in it can fork into it: no kill, no freeze cycle
    assert (run.dirs["memory"] / "cgroup.kill").read_text() == ""
    assert (run.dirs["memory"] / "cgroup.freeze").read_text() == "0\n"


def test_v2_missing_memory_controller_explains_the_fix(tmp_path: Path) -> None:
    with pytest.raises(JailUnavailable, match=r"memory and pids.*Delegate=yes"):
        Cgroups.detect("cloche-t", mounts=v2_tree(tmp_path, controllers="cpu io pids"))


def test_duplicate_run_is_refused_and_bad_parent_rejected(v2: Cgroups, tmp_path: Path) -> None:
    v2.create("dup", LIMITS).close_fds()
    with pytest.raises(JailUnavailable, match="already exists"):
        v2.create("dup", LIMITS)
    with pytest.raises(InvalidRequest):
        Cgroups.detect("../escape", mounts=tmp_path / "mounts")


def test_v1_comounted_cpu_cpuacct_and_no_swap_accounting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cgroup_base, "make_group", fake_mkdir(V1_FILES))
    base = tmp_path / "cg root"  # a space, escaped as \040 in /proc/self/mounts
    lines = []
    for hierarchy, options in [("memory", "memory"), ("cpu,cpuacct", "cpu,cpuacct"), ("pids", "pids")]:
        (base / hierarchy).mkdir(parents=True)
        where = str(base / hierarchy).replace(" ", "\\040")
        lines.append(f"cgroup {where} cgroup rw,nosuid,nodev,noexec,relatime,{options} 0 0")
    (base / "unified").mkdir()
    (base / "unified" / "cgroup.controllers").write_text("\n")
    lines.append(f"cgroup2 {str(base / 'unified').replace(' ', chr(92) + '040')} cgroup2 rw 0 0")
    (tmp_path / "mounts").write_text("\n".join(lines) + "\n")

    groups = Cgroups.detect("cloche-t", mounts=tmp_path / "mounts")
    assert groups.version == 1
    assert groups.dirs["cpu"] == groups.dirs["cpuacct"] == base / "cpu,cpuacct" / "cloche-t"
    run = groups.create("run", LIMITS)
    run.preexec_attach()  # a single-threaded joiner moves itself through "tasks" (no threadgroup lock)
    run.close_fds()
    assert len(run.paths) == 3
    assert all((path / "tasks").read_text() == "0" and (path / "cgroup.procs").read_text() == "" for path in run.paths)
    memory = run.dirs["memory"]
    assert (memory / "memory.limit_in_bytes").read_text() == str(64 * MiB)
    assert (memory / "memory.swappiness").read_text() == "0"
    assert (run.dirs["pids"] / "pids.max").read_text() == "16"
    assert (run.dirs["cpu"] / "cpu.cfs_quota_us").read_text() == "50000"
    # Before Linux 4.13, v1 has no oom_kill count: a limit hit with usage at the limit stands in.
    assert not run.oom_killed()
    (memory / "memory.failcnt").write_text("7\n")
    (memory / "memory.max_usage_in_bytes").write_text(f"{64 * MiB}\n")
    assert run.oom_killed()


@pytest.mark.parametrize("memory_bytes, pids_max, cpu_cores", [(0, 1, 1.0), (1, 0, 1.0), (1, 1, float("nan"))])
def test_limits_are_validated(memory_bytes: int, pids_max: int, cpu_cores: float) -> None:
    with pytest.raises(InvalidRequest):
        CgroupLimits(memory_bytes=memory_bytes, pids_max=pids_max, cpu_cores=cpu_cores)


def test_tiny_cpu_share_gets_the_kernels_smallest_quota() -> None:
    assert CgroupLimits(memory_bytes=1, pids_max=1, cpu_cores=0.001).cpu_quota_us == 1000
