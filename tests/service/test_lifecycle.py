"""Lifecycle across server restarts, crashes, idle TTLs and tenants: each with its own real server."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cloche import ClocheAPIError
from conftest import ServerProcess, pool_processes


def test_restart_keeps_sandboxes_and_files(fresh_server: ServerProcess) -> None:
    fresh_server.start()
    with fresh_server.client() as client:
        box = client.create(language="python")
        box.write("main.py", "print(open('note.txt').read())")
        box.exec(command="echo kept > note.txt")
    fresh_server.stop()
    fresh_server.start()
    with fresh_server.client() as client:
        again = client.sandbox(box.id)
        assert again.refresh().language == "python"
        assert again.exec(filename="main.py").stdout == "kept\n\n"
        assert len(again.runs().runs) == 2


def test_crash_mid_run_leaves_nothing_behind(fresh_server: ServerProcess) -> None:
    fresh_server.start()
    low, high = fresh_server.uid_range
    with fresh_server.client() as client:
        box = client.create()
        events = box.stream(command="setsid sleep 600 & echo up; sleep 600")
        assert next(events).text == "up\n"
        assert pool_processes(low, high)
        fresh_server.crash()
        # The jail dies with its supervisor (die-with-parent); nothing of the sandbox survives.
        deadline = time.monotonic() + 10
        while pool_processes(low, high) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pool_processes(low, high) == []
        events.close()
    fresh_server.start()
    with fresh_server.client() as client:
        runs = client.sandbox(box.id).runs().runs
        assert runs[0].status == "failed"
        record = client.sandbox(box.id).run(runs[0].run_id)
        assert record.error is not None and "server stopped" in record.error
        assert client.sandbox(box.id).exec(command="echo alive").stdout == "alive\n"
    # The cut run has its audit record, written at reconciliation, with the reason.
    finished = [r for r in audit_records(fresh_server) if r["event"] == "run_finished"]
    assert [(r["run_id"], r["status"], r["error"]) for r in finished][:1] == [
        (
            runs[0].run_id,
            "failed",
            "the server stopped during this run",
        )
    ]


def audit_records(server: ServerProcess) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (server.data_dir / "audit.jsonl").read_text().splitlines()]


def test_a_crash_during_the_bytecode_build_is_repaired_at_start(
    fresh_server: ServerProcess, offline_wheels: Path
) -> None:
    fresh_server.env["CLOCHE_PYTHON_WHEEL_DIR"] = str(offline_wheels)
    fresh_server.start()
    envs = fresh_server.data_dir / "envs"
    with fresh_server.client() as client:
        box = client.create(language="python")
        box.write("requirements.txt", "six==1.15.0\n")
        box.write("main.py", "import six\nprint(six.__version__)\n")
        first = box.exec(filename="main.py")
        assert first.status == "succeeded" and first.install is not None, first.output
        key = first.install.environment
    # The companion (the environment's and the standard library's bytecode) takes seconds to compile in the
    # background: the server dies in the middle of it.
    fresh_server.crash()
    companion = envs / f"{key}-pyc"
    assert not (companion / "cloche-env.json").exists(), "the companion landed before the crash"
    half_built = list(envs.glob(".build-*"))
    assert half_built  # the companion's build directory, cut short
    fresh_server.start()
    assert not any(p.exists() for p in half_built)
    deadline = time.monotonic() + 90
    while not (companion / "cloche-env.json").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (companion / "cloche-env.json").exists(), "the companion a crash cut short was never rebuilt"
    with fresh_server.client() as client:
        used = client.sandbox(box.id).exec(command="python3 -c 'import os, six; print(os.path.exists(six.__cached__))'")
        assert used.stdout == "True\n"


def test_idle_ttl_reaps_with_a_clear_reason(fresh_server: ServerProcess) -> None:
    fresh_server.env["CLOCHE_REAPER_INTERVAL_SECONDS"] = "0.3"
    fresh_server.start()
    with fresh_server.client() as client:
        box = client.create(ttl_seconds=1)
        keeper = client.create(ttl_seconds=60)
        time.sleep(2.5)
        with pytest.raises(ClocheAPIError) as caught:
            box.refresh()
        assert caught.value.status == 404
        assert caught.value.code == "sandbox_expired"
        assert "expired" in caught.value.message
        assert keeper.refresh().id == keeper.id
        assert not (fresh_server.data_dir / "workspaces" / box.id).exists()


def test_exec_resets_idleness(fresh_server: ServerProcess) -> None:
    fresh_server.env["CLOCHE_REAPER_INTERVAL_SECONDS"] = "0.3"
    fresh_server.start()
    with fresh_server.client() as client:
        box = client.create(ttl_seconds=2)
        for _ in range(4):
            time.sleep(0.8)
            box.exec(command="true")
        assert box.refresh().id == box.id


def test_api_keys_separate_tenants(fresh_server: ServerProcess) -> None:
    fresh_server.env["CLOCHE_API_KEYS"] = "alice:key-a,bob:key-b"
    fresh_server.start()
    with fresh_server.client("key-a") as alice, fresh_server.client("key-b") as bob:
        box = alice.create()
        assert [s.id for s in alice.list()] == [box.id]
        assert bob.list() == []
        with pytest.raises(ClocheAPIError) as caught:
            bob.sandbox(box.id).exec(command="id")
        assert caught.value.status == 404
    with fresh_server.client() as anonymous, pytest.raises(ClocheAPIError) as caught:
        anonymous.list()
    assert caught.value.status == 401
    with fresh_server.client("wrong") as wrong, pytest.raises(ClocheAPIError) as caught:
        wrong.list()
    assert caught.value.code == "unauthorized"


def test_refuses_public_bind_without_keys(fresh_server: ServerProcess) -> None:
    env = {**fresh_server.env, "CLOCHE_HOST": "0.0.0.0"}
    cli = [sys.executable, "-c", "from cloche.cli.main import main; main()", "serve"]
    done = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "CLOCHE_API_KEYS" in done.stderr


def test_refuses_to_start_when_jail_cannot_reach_data(fresh_server: ServerProcess) -> None:
    fresh_server.data_dir.parent.chmod(0o700)
    with pytest.raises(RuntimeError) as caught:
        fresh_server.start(timeout=90)
    assert "not traversable by sandbox uids" in str(caught.value)
