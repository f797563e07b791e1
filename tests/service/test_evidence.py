"""Auditable runs: per-run locks, CycloneDX SBOMs, dependency diffs, the hash-chained log, license policy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cloche.sbom import validate_sbom
from conftest import ServerProcess
from tests_support import run_file

CLI = [sys.executable, "-c", "from cloche.cli.main import main; main()"]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60, env=dict(os.environ))


def test_two_pins_give_right_sboms_and_a_diff(offline_server: ServerProcess) -> None:
    with offline_server.client() as cloche, cloche.create() as box:
        box.write("main.py", "import six\nprint(six.__version__)\n")
        box.write("requirements.txt", "six==1.15.0\n")
        first = box.exec(filename="main.py")
        box.write("requirements.txt", "six==1.16.0\nrequests\n")
        second = box.exec(filename="main.py")
        assert (first.stdout, second.stdout) == ("1.15.0\n", "1.16.0\n")

        raw = box.client.request("GET", f"/v1/sandboxes/{box.id}/runs/{second.run_id}/sbom")
        assert raw.headers["content-type"].startswith("application/vnd.cyclonedx+json")
        sbom = raw.json()
        validate_sbom(json.dumps(sbom))
        assert sbom["specVersion"] == "1.6"
        components = {c["name"]: c for c in sbom["components"]}
        assert set(components) == {"six", "requests", "idna"}
        six = components["six"]
        assert six["version"] == "1.16.0"
        assert six["purl"] == "pkg:pypi/six@1.16.0"
        assert [lic.get("license", {}).get("id") or lic.get("expression") for lic in six["licenses"]] == ["MIT"]
        assert six["hashes"][0]["alg"] == "SHA-256"
        assert components["requests"]["licenses"][0]["license"]["id"] == "Apache-2.0"
        properties = {p["name"]: p["value"] for p in six.get("properties", [])}
        assert properties["cloche:provenance"] == "requirements.txt"

        lock = box.client.request("GET", f"/v1/sandboxes/{box.id}/runs/{first.run_id}/deps").json()
        assert lock["source"] == "requirements.txt"
        assert "six==1.15.0" in lock["lock"]
        assert [(c["name"], c["version"]) for c in lock["components"]] == [("six", "1.15.0")]

        diff = box.client.request(
            "GET", f"/v1/sandboxes/{box.id}/deps/diff", params={"from": first.run_id, "to": second.run_id}
        ).json()
        assert [(c["name"], c["from_version"], c["to_version"]) for c in diff["changed"]] == [
            ("six", "1.15.0", "1.16.0")
        ]
        assert sorted(c["name"] for c in diff["added"]) == ["idna", "requests"]
        assert diff["removed"] == []


def test_run_without_dependencies_has_a_small_valid_sbom(offline_server: ServerProcess) -> None:
    with offline_server.client() as cloche, cloche.create() as box:
        run = box.exec(command="echo hi")
        sbom = box.client.request("GET", f"/v1/sandboxes/{box.id}/runs/{run.run_id}/sbom").json()
        validate_sbom(json.dumps(sbom))
        assert sbom.get("components", []) == []
        missing = box.client._http.get(f"/v1/sandboxes/{box.id}/deps/diff", params={"from": run.run_id})
    assert missing.status_code == 422
    assert "to" in missing.json()["error"]["message"]


def test_audit_log_verifies_and_catches_one_edited_byte(fresh_server: ServerProcess) -> None:
    fresh_server.start()
    with fresh_server.client() as cloche:
        box = cloche.create()
        box.write("main.py", "print('audited')\n")
        box.exec(filename="main.py")
        box.remove("main.py")
        box.delete()
    fresh_server.stop()
    data = str(fresh_server.data_dir)
    ok = cli("audit", "verify", "--data-dir", data)
    assert ok.returncode == 0, ok.stderr
    records = [json.loads(line) for line in cli("audit", "export", box.id, "--data-dir", data).stdout.splitlines()]
    events = [r["event"] for r in records]
    assert events == [
        "sandbox_created",
        "file_written",
        "exec_requested",
        "run_finished",
        "file_deleted",
        "sandbox_deleted",
    ]
    finished = records[3]
    assert finished["exit_code"] == 0 and finished["status"] == "succeeded"
    assert len(finished["stdout_sha256"]) == 64 and len(finished["workspace_tree_sha256"]) == 64

    log = Path(data) / "audit.jsonl"
    pristine = log.read_bytes()
    where = pristine.index(b'"path":"main.py"') + len(b'"path":"ma')
    edited = bytearray(pristine)
    edited[where] = ord("x")  # one byte: main.py -> maxn.py
    log.write_bytes(bytes(edited))
    bad = cli("audit", "verify", "--data-dir", data)
    assert bad.returncode == 1
    line = pristine[:where].count(b"\n") + 1
    assert f"record {line}" in bad.stderr
    log.write_bytes(pristine)
    assert cli("audit", "verify", "--data-dir", data).returncode == 0


def test_license_policy_refuses_denied_license(fresh_server: ServerProcess, offline_wheels: Path) -> None:
    fresh_server.env["CLOCHE_PYTHON_WHEEL_DIR"] = str(offline_wheels)
    fresh_server.env["CLOCHE_LICENSE_DENY"] = "Apache-2.0,AGPL-3.0-only"
    fresh_server.start()
    with fresh_server.client() as cloche, cloche.create() as box:
        box.write("requirements.txt", "requests\n")
        result = run_file(box, "main.py", "import requests\n", status="install_failed")
        assert "requests==2.31.0" in result.output and "Apache-2.0" in result.output
        box.write("requirements.txt", "six\n")
        box.write("main.py", "import six\nprint('fine')\n")
        assert box.exec(filename="main.py").stdout == "fine\n"
