"""The OpenAPI document describes the answers the server really gives, checked by schemathesis over HTTP.

Schemathesis reads ``/openapi.json`` from a real server (real jail, real SQLite) and sends each operation a
bounded number of generated requests, valid and invalid: every answer must be documented (status, content type,
body schema, ``Allow`` on 405) and none may be a server error. The seed is fixed, so a run is reproducible; it
stops by itself (about a minute on two cores).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import ServerProcess, loop_devices_under, running_server

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "unsupported_method",
    "allow_header_conformance",
)
EXAMPLES_PER_OPERATION = 8
SEED = "20261203"


@pytest.fixture(scope="module")
def fuzzed_server() -> Iterator[ServerProcess]:
    # Short runs: a generated exec may ask for any timeout, and the server clamps it to this.
    with running_server({"CLOCHE_MAX_TIMEOUT_SECONDS": "3", "CLOCHE_DEFAULT_TIMEOUT_SECONDS": "3"}) as srv:
        yield srv
        # The runs create many sandboxes: delete them while the server runs, and wait until their workspace
        # volumes' loop devices have detached, so nothing of them outlives the suite.
        with srv.client() as client:
            for box in client.list():
                client.sandbox(box.id).delete()
        deadline = time.monotonic() + 60
        while loop_devices_under(srv.data_dir) and time.monotonic() < deadline:
            time.sleep(0.2)


def test_every_error_answer_is_documented_with_the_error_body(fuzzed_server: ServerProcess) -> None:
    spec = httpx.get(f"{fuzzed_server.url}/openapi.json").json()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for status, answer in operation["responses"].items():
                if status.startswith(("4", "5")):
                    schema = str(answer["content"]["application/json"]["schema"])
                    wanted = "SeedErrorBody" if path.startswith("/jhansi/") else "ErrorBody"
                    assert schema.endswith(f"/{wanted}'}}"), (method, path, status, schema)


def test_405_lists_every_method_of_the_path(fuzzed_server: ServerProcess) -> None:
    answer = httpx.patch(f"{fuzzed_server.url}/v1/sandboxes/sb_000000000000000000000000/files/a.txt")
    assert answer.status_code == 405
    assert set(answer.headers["allow"].split(", ")) == {"GET", "PUT", "DELETE"}
    assert answer.json()["error"]["code"] == "method_not_allowed"


def schemathesis_run(server: ServerProcess, config: Path | None = None, exclude: tuple[str, ...] = ()) -> None:
    """One bounded run; any failed check fails the test with schemathesis' report (each with a curl line)."""
    configured = ("--config-file", str(config)) if config else ()
    command = [
        *(sys.executable, "-m", "schemathesis.cli", *configured, "run", f"{server.url}/openapi.json"),
        *(option for operation in exclude for option in ("--exclude-operation-id", operation)),
        *("--checks", ",".join(CHECKS)),
        *("--max-examples", str(EXAMPLES_PER_OPERATION), "--seed", SEED, "--workers", "1"),
        *("--phases", "examples,coverage,fuzzing", "--no-color"),
    ]
    # Its run cache goes to the server's scratch folder, never into the checkout.
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=server.data_dir.parent)
    report = done.stdout + done.stderr
    assert done.returncode == 0, report[-20000:]
    assert re.search(r"\d+ generated, \d+ passed", report), report[-2000:]


@pytest.mark.timeout(900)  # its own run is bounded at 600 s; the server's start and teardown come on top
def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(fuzzed_server: ServerProcess) -> None:
    # Generated ids: every operation, mostly its validation and its 404.
    schemathesis_run(fuzzed_server)


@pytest.mark.timeout(900)
def test_schemathesis_inside_a_real_sandbox(fuzzed_server: ServerProcess, tmp_path: Path) -> None:
    # One real sandbox with a file in it, so generated uploads, execs and file calls reach the service and the
    # jail; deleting the sandbox itself is left out (it would end the run's subject).
    with fuzzed_server.client() as client:
        box = client.create()
        box.write("main.py", "print('hi')\n")
        # Its code context's kernel tools are installed and its default kernel runs before generated cells come.
        assert box.run_code("1", timeout=60).status == "ok"
    config = tmp_path / "schemathesis.toml"
    config.write_text(f'[parameters]\n"path.sandbox_id" = "{box.id}"\n')
    keep = ("delete_sandbox_v1_sandboxes__sandbox_id__delete", "delete_sandbox_jhansi_v1_sandboxes__sandbox_id__delete")
    spec = httpx.get(f"{fuzzed_server.url}/openapi.json").json()
    ids = {op["operationId"] for ops in spec["paths"].values() for op in ops.values()}
    assert set(keep) <= ids
    schemathesis_run(fuzzed_server, config, exclude=keep)
    with fuzzed_server.client() as client:
        assert client.sandbox(box.id).refresh().id == box.id
