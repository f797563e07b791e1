"""The gVisor tier through the whole service: dependencies (untrusted build scripts included) install under it and
run with the same fast path, and a server that cannot run it says so with a 422 instead of falling back."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from conftest import running_server

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ecosystems" / "python"))
from _pywheels import build_poisoning_sdist, standard_wheels

from tests_support import run_file


def test_dependencies_build_install_and_run_under_gvisor_with_the_fast_path() -> None:
    """gVisor as the server default for sandboxes and for install jails: a wheel install, then a source build
    whose backend runs third-party code, each verified and bound once, then reused with no install step."""

    def settings(root: Path) -> dict[str, str]:
        wheels = standard_wheels(root / "wheels")
        build_poisoning_sdist(wheels)
        return {
            "CLOCHE_PYTHON_WHEEL_DIR": str(wheels),
            "CLOCHE_ISOLATION": "gvisor",
            "CLOCHE_INSTALL_ISOLATION": "gvisor",
        }

    with running_server(settings) as server, server.client() as cloche, cloche.create() as box:
        assert box.refresh().isolation == "gvisor"  # the server default, stored with the sandbox
        box.write("requirements.txt", "six==1.15.0\nbuildpoison==1.0\n")
        first = run_file(box, "main.py", "import buildpoison, six\nprint(six.__version__, buildpoison.VALUE)\n")
        assert first.stdout == "1.15.0 built\n"
        assert first.install is not None
        assert sorted(p.name for p in first.install.installed) == ["buildpoison", "six"]
        second = box.exec(filename="main.py")
        assert (second.status, second.stdout) == ("succeeded", "1.15.0 built\n")
        assert second.install is not None and second.install.installed == [] and second.install.reused_environment
        kernel = box.exec(command="cat /proc/version")
        assert kernel.stdout != Path("/proc/version").read_text()  # it all ran on gVisor's kernel
        # The build backend's attempt to write into the shared cache and the tool mounts changed nothing.
        assert list((server.data_dir / "cache").rglob("POISONED")) == []
        assert list((server.data_dir / "jail").rglob("POISONED")) == []


@pytest.mark.parametrize(
    ("runsc", "reason"),
    [("/nonexistent/runsc", "not installed at /nonexistent/runsc"), ("/bin/false", "could not start a sandbox")],
)
def test_gvisor_is_refused_with_a_422_where_runsc_cannot_run(runsc: str, reason: str) -> None:
    with running_server({"CLOCHE_RUNSC": runsc}) as server, httpx.Client(base_url=server.url, timeout=60) as api:
        refused = api.post("/v1/sandboxes", json={"isolation": "gvisor"})
        assert refused.status_code == 422, refused.text
        error = refused.json()["error"]
        assert error["code"] == "isolation_unavailable"
        assert reason in error["message"]
        assert api.get("/v1/sandboxes").json()["sandboxes"] == []  # nothing was created, nothing fell back
        made = api.post("/v1/sandboxes", json={"isolation": "bwrap"})
        assert made.status_code == 201 and made.json()["isolation"] == "bwrap"
        ran = api.post(f"/v1/sandboxes/{made.json()['id']}/exec", json={"command": "echo ok"}).json()
        assert (ran["status"], ran["stdout"]) == ("succeeded", "ok\n")


def test_a_server_whose_default_tier_cannot_run_refuses_to_start() -> None:
    settings = {"CLOCHE_RUNSC": "/nonexistent/runsc", "CLOCHE_ISOLATION": "gvisor"}
    with running_server(settings, start=False) as srv, pytest.raises(RuntimeError, match="runsc"):
        srv.start(timeout=60)
