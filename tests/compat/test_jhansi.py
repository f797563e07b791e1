"""The seed's clients against cloche: the unchanged PyPI ``jhansi`` 0.1.7 SDK and CLI, with JHANSI_BASE_URL set.

``jhansi`` needs Python >= 3.12, so it lives in its own venv (built once from PyPI, cached across runs) and runs in
subprocesses. A local wheel folder stands in for the index behind cloche, so dependency installs need no registry.
The wire tests (raw HTTP, no seed package) and the translation tests need no network.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cloche.api.compat_jhansi import translate
from conftest import ServerProcess, running_server
from tests_support import zip_of

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ecosystems" / "python"))
from _pywheels import build_wheel, standard_wheels

JHANSI_VERSION = "0.1.7"
VENV = Path(f"/tmp/cloche-jhansi-venv-{JHANSI_VERSION}")
FAKE_PYTEST = (
    "import os, sys\n"
    "print('fake pytest', sys.argv[1:])\n"
    "print('server started:', os.path.exists('started'))\n"
    "print('tests:', sorted(os.listdir('tests')))\n"
)


# the seed's package, in a Python 3.12 venv of its own


def _python312() -> str | None:
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = [shutil.which("python3.12"), "/usr/bin/python3.12", "/usr/local/bin/python3.12"]
    candidates += [str(p) for p in sorted(pyenv.glob("versions/3.1[2-9]*/bin/python3"))]
    for candidate in filter(None, candidates):
        check = [candidate, "-c", "import sys; assert sys.version_info >= (3, 12)"]
        with contextlib.suppress(OSError):
            if subprocess.run(check, capture_output=True).returncode == 0:  # a pyenv shim may exist yet refuse
                return candidate
    return None


def _healthy(venv: Path) -> bool:
    probe = (
        f"import importlib.metadata as m, jhansi.sandbox, jhansi.cli; assert m.version('jhansi') == '{JHANSI_VERSION}'"
    )
    python, cli = venv / "bin" / "python", venv / "bin" / "jhansi"
    if not (python.exists() and cli.exists()):  # exists() is False for a dangling interpreter link too
        return False
    return subprocess.run([python, "-c", probe], capture_output=True).returncode == 0


@pytest.fixture(scope="session")
def jhansi_venv() -> Path:
    python = _python312()
    if python is None:
        pytest.skip("the jhansi package needs Python >= 3.12, and none was found")
    with open(f"{VENV}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs never build the same venv at once
        if not _healthy(VENV):
            shutil.rmtree(VENV, ignore_errors=True)
            subprocess.run([python, "-m", "venv", VENV], check=True)
            pip = [VENV / "bin" / "pip", "install", "-q", "--disable-pip-version-check", f"jhansi=={JHANSI_VERSION}"]
            subprocess.run(pip, check=True, timeout=900)
        assert _healthy(VENV), f"{VENV} is broken even after a rebuild"
    return VENV


def _env(base_url: str) -> dict[str, str]:
    return {**os.environ, "JHANSI_BASE_URL": base_url, "NO_PROXY": "127.0.0.1,localhost"}


def run_sdk(venv: Path, base_url: str, script: str, *args: str) -> dict[str, object]:
    """Run ``script`` with the seed's SDK under Python 3.12; it prints one JSON object."""
    proc = subprocess.run(
        [venv / "bin" / "python", "-c", script, *args], env=_env(base_url), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def jhansi_cli(venv: Path, base_url: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [venv / "bin" / "jhansi", *args], cwd=cwd, env=_env(base_url), capture_output=True, text=True, timeout=300
    )


# a cloche server whose Python dependencies come from tiny local wheels


START_TIMEOUT = 120.0  # a loaded host can take longer than the usual start


@pytest.fixture(scope="module")
def offline() -> Iterator[ServerProcess]:
    def env(root: Path) -> dict[str, str]:
        wheels = standard_wheels(root / "wheels")
        build_wheel(wheels, "pytest", "8.0.0", {"pytest/__init__.py": "", "pytest/__main__.py": FAKE_PYTEST})
        return {"CLOCHE_PYTHON_WHEEL_DIR": str(wheels), "CLOCHE_DEFAULT_TIMEOUT_SECONDS": "8"}

    with running_server(env, timeout=START_TIMEOUT) as server:
        yield server


@pytest.fixture
def seed(offline: ServerProcess) -> Iterator[httpx.Client]:
    """A raw HTTP client on the compatibility API, speaking exactly what the seed's SDK sends."""
    with httpx.Client(base_url=f"{offline.url}/jhansi", timeout=120) as client:
        yield client


def events(
    client: httpx.Client, sandbox_id: str, command: str, test: bool = False
) -> list[tuple[str, dict[str, object]]]:
    body = {"command": command, "test": test}
    with client.stream("POST", f"/v1/sandboxes/{sandbox_id}/exec", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        text = "".join(response.iter_text())
    found = []
    for block in text.strip().split("\n\n"):
        if block.startswith(":"):  # a keepalive comment
            continue
        kind, data = block.split("\n")
        assert kind.startswith("event: ") and data.startswith("data: ")
        found.append((kind.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return found


def output(found: list[tuple[str, dict[str, object]]]) -> list[object]:
    return [payload["data"] for kind, payload in found if kind == "output"]


# the wire format, raw


def test_wire_format_matches_the_seed(seed: httpx.Client, offline: ServerProcess) -> None:
    created = seed.post("/v1/sandboxes", json={"language": "python", "agent": "pytest", "created_by": "tests"})
    assert created.status_code == 201
    sid = created.json()["id"]
    assert created.json() == {"id": sid, "language": "python", "status": "created"}
    upload = seed.post(
        f"/v1/sandboxes/{sid}/files", files={"file": ("main.py", b"import six\nprint(six.__version__)\n")}
    )
    assert (upload.status_code, upload.json()) == (201, {"filename": "main.py"})
    archive = zip_of({"requirements.txt": "six==1.15.0\n", "pkg/data.txt": "x"})
    unzipped = seed.post(f"/v1/sandboxes/{sid}/upload", files={"file": ("p.zip", archive)})
    assert (unzipped.status_code, unzipped.json()) == (201, {"status": "uploaded"})

    found = events(seed, sid, "python main.py")
    assert output(found) == ["1.15.0"]  # the install is silent, as the seed's was
    kind, done = found[-1]
    assert kind == "done" and done["type"] == "done"
    assert (done["exit_code"], done["status"], done["error"]) == (0, "succeeded", None)
    assert "six==1.15.0" in str(done["output"]) and str(done["output"]).endswith("1.15.0\n")  # installed here
    # Same services underneath: the native API sees the run, run as a file exec.
    runs = httpx.get(f"{offline.url}/v1/sandboxes/{sid}/runs").json()["runs"]
    assert runs[0]["argv"] == ["python3", "main.py"]
    # Shell commands run in that environment; outside the adapter's shell function, `python` is the environment's.
    assert output(events(seed, sid, "sh -c 'command -v python'")) == ["/opt/cloche/env/python/bin/python"]

    failed = events(seed, sid, "echo out; echo boom >&2; exit 3")
    assert sorted(map(str, output(failed))) == ["boom", "out"]
    assert [p["stream"] for k, p in failed if k == "output"].count("stderr") == 1
    assert {k: failed[-1][1][k] for k in ("exit_code", "status", "error")} == {
        "exit_code": 3,
        "status": "failed",
        "error": "boom",
    }
    assert seed.delete(f"/v1/sandboxes/{sid}").status_code == 204
    assert seed.get(f"/v1/sandboxes/{sid}").status_code == 404


def test_errors_have_the_seeds_shape(seed: httpx.Client) -> None:
    missing = seed.get("/v1/sandboxes/sb_nope")
    assert missing.status_code == 404 and isinstance(missing.json()["detail"], str)
    assert seed.delete("/v1/sandboxes/sb_nope").status_code == 404
    assert seed.post("/v1/sandboxes/sb_nope/exec", json={"command": "true"}).status_code == 404
    bad = seed.post("/v1/sandboxes", json={"language": "cobol"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "language"]
    sid = seed.post("/v1/sandboxes", json={"language": "python"}).json()["id"]
    assert seed.post(f"/v1/sandboxes/{sid}/exec", json={}).status_code == 422
    escape = seed.post(f"/v1/sandboxes/{sid}/upload", files={"file": ("p.zip", zip_of({"../x": "y"}))})
    assert escape.status_code == 400 and "detail" in escape.json()
    seed.delete(f"/v1/sandboxes/{sid}")


def test_what_cloche_stopped_is_shown_as_output(seed: httpx.Client) -> None:
    sid = seed.post("/v1/sandboxes", json={"language": "python"}).json()["id"]
    seed.post(f"/v1/sandboxes/{sid}/files", files={"file": ("requirements.txt", b"not-a-real-package==9.9\n")})
    seed.post(f"/v1/sandboxes/{sid}/files", files={"file": ("main.py", b"print('never')\n")})
    broken = events(seed, sid, "python main.py")
    assert output(broken)[0] == "Install failed:" and "never" not in output(broken)
    assert broken[-1][1]["status"] == "install_failed" and broken[-1][1]["exit_code"] is None
    slow = events(seed, sid, "echo started; sleep 60")
    assert output(slow)[0] == "started" and str(output(slow)[-1]).startswith("cloche: ")
    assert slow[-1][1]["status"] == "timed_out" and slow[-1][1]["exit_code"] is None
    gone = events(seed, sid, "python nowhere.py")
    assert str(output(gone)[0]).startswith("cloche: ") and "nowhere.py" in str(output(gone)[0])
    seed.delete(f"/v1/sandboxes/{sid}")


def test_test_mode_runs_the_command_in_the_background_then_the_tests(seed: httpx.Client) -> None:
    sid = seed.post("/v1/sandboxes", json={"language": "python"}).json()["id"]
    project = {
        "requirements.txt": "pytest==8.0.0\n",
        "app.py": "import pathlib, time\npathlib.Path('started').write_text('1')\nprint('hidden')\ntime.sleep(600)\n",
        "tests/test_app.py": "def test_ok():\n    pass\n",
        "prepare.py": "print('ready')\n",
    }
    seed.post(f"/v1/sandboxes/{sid}/upload", files={"file": ("p.zip", zip_of(project))})
    # The seed installed before every exec; cloche installs on a file exec, and a test run uses what it bound.
    assert output(events(seed, sid, "python prepare.py")) == ["ready"]
    found = events(seed, sid, "python app.py", test=True)
    assert output(found) == ["fake pytest ['tests', '-v']", "server started: True", "tests: ['test_app.py']"]
    assert found[-1][1]["exit_code"] == 0
    seed.delete(f"/v1/sandboxes/{sid}")


@pytest.mark.parametrize(
    ("command", "filename", "args"),
    [
        ("python main.py", "main.py", []),
        ("python3 src/tool.py 'two words' x", "src/tool.py", ["two words", "x"]),
        ("node app.js", "app.js", []),
    ],
)
def test_plain_runs_become_file_execs(command: str, filename: str, args: list[str]) -> None:
    request = translate(command, False, "python")
    assert (request.filename, request.args, request.command) == (filename, args, None)


@pytest.mark.parametrize(
    "command", ["python -m pytest", "python main.py | tee log", "cd x && python y.py", "FOO=1 python a.py", "node a.py"]
)
def test_everything_else_is_a_shell_command(command: str) -> None:
    request = translate(command, False, "python")
    assert request.filename is None and request.command is not None and request.command.endswith(command)


# the seed's SDK and CLI, unchanged, under Python 3.12

SDK_SCRIPT = """
import json, sys
import httpx
from jhansi.sandbox import Sandbox

work, out = sys.argv[1], {}
sb = Sandbox(language="python").create(agent="pytest", created_by="cloche-tests")
out["id"] = sb._id
sb.upload_file(f"{work}/main.py")
sb.upload_zip(f"{work}/project.zip")
out["status"] = sb.status()
out["first"] = sb.exec("python main.py")
out["again"] = sb.exec("python3 main.py again")
out["shell"] = sb.exec("cd lib && python -c 'import greet, yaml; print(greet.hello(), yaml.__name__)' && exit 3")
out["missing"] = sb.exec("python missing.py")
sb.delete()
gone = Sandbox(language="python")
gone._id = out["id"]
try:
    gone.status()
except httpx.HTTPStatusError as exc:
    out["after_delete"] = exc.response.status_code
print(json.dumps(out))
"""

MAIN = """import sys
import yaml
from lib.greet import hello
print(hello(), yaml.safe_load("x"), sys.argv[1:])
print("to stderr", file=sys.stderr)
print("no newline", end="")
"""


@pytest.mark.network
def test_sdk_sandbox_round_trip(jhansi_venv: Path, offline: ServerProcess, tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text(MAIN)
    (tmp_path / "project.zip").write_bytes(zip_of({"lib/greet.py": "def hello():\n    return 'hello from the zip'\n"}))
    out = run_sdk(jhansi_venv, f"{offline.url}/jhansi", SDK_SCRIPT, str(tmp_path))
    assert out["status"] == {"id": out["id"], "language": "python", "status": "created"}
    # yaml was not uploaded: cloche found the import and installed PyYAML (the local wheel answers 'k').
    first = str(out["first"])
    assert sorted(first.splitlines()) == ["hello from the zip {'k': 'x'} []", "no newline", "to stderr"]
    assert first.endswith("\n")  # the SDK adds one per line, the last partial line included
    assert "hello from the zip {'k': 'x'} ['again']\n" in str(out["again"])
    assert out["shell"] == "hello from the zip yaml\n"  # a shell command sees the installed environment
    assert str(out["missing"]).startswith("cloche: ") and "missing.py" in str(out["missing"])
    assert out["after_delete"] == 404


@pytest.mark.network
def test_cli_watch_exec_resync_and_recreate(jhansi_venv: Path, offline: ServerProcess, tmp_path: Path) -> None:
    base = f"{offline.url}/jhansi"
    project = tmp_path / "project"
    project.mkdir()
    unwatched = jhansi_cli(jhansi_venv, base, project, "exec", "python main.py")
    assert unwatched.returncode == 1 and "No .jhansi file found" in unwatched.stdout
    (project / "requirements.txt").write_text("six==1.16.0\n")
    (project / "main.py").write_text("import six\nprint('v1', six.__version__)\n")

    watched = jhansi_cli(jhansi_venv, base, project, "watch", ".")
    assert watched.returncode == 0, watched.stderr
    first_id = (project / ".jhansi").read_text().splitlines()[0]
    assert watched.stdout == f"Sandbox ready: {first_id}\n"

    ran = jhansi_cli(jhansi_venv, base, project, "exec", "python main.py")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "Running: python main.py\nv1 1.16.0\n\n"

    (project / "main.py").write_text("import six\nprint('v2', six.__version__)\n")
    synced = jhansi_cli(jhansi_venv, base, project, "exec", "python main.py")
    assert synced.stdout == "Changes detected, syncing...\nRunning: python main.py\nv2 1.16.0\n\n"

    assert httpx.delete(f"{base}/v1/sandboxes/{first_id}").status_code == 204
    recreated = jhansi_cli(jhansi_venv, base, project, "exec", "python main.py")
    assert recreated.stdout.startswith("Sandbox expired, recreating...\nSandbox ready: sb_")
    assert recreated.stdout.endswith("Running: python main.py\nv2 1.16.0\n\n")
    second_id = (project / ".jhansi").read_text().splitlines()[0]
    assert second_id != first_id

    failing = jhansi_cli(jhansi_venv, base, project, "exec", "python -c 'import sys; sys.exit(4)'")
    assert failing.returncode == 0  # the seed's CLI never reports the program's exit code

    gone = jhansi_cli(jhansi_venv, base, project, "unwatch")
    assert gone.returncode == 0 and f"Sandbox {second_id} deleted." in gone.stdout
    assert not (project / ".jhansi").exists()
    assert httpx.get(f"{base}/v1/sandboxes/{second_id}").status_code == 404


AUTH_SCRIPT = """
import json
import httpx
from jhansi.sandbox import Sandbox

sb = Sandbox(language="python").create()
out = {"exec": sb.exec("echo authorised"), "status": sb.status()["status"]}
sb.delete()
try:
    Sandbox(language="python", base_url=sb.base_url.replace("s3cret-key", "wrong")).create()
except httpx.HTTPStatusError as exc:
    out["wrong_key"] = exc.response.status_code
print(json.dumps(out))
"""


@pytest.mark.network
def test_api_key_travels_in_the_base_url(jhansi_venv: Path) -> None:
    with running_server({"CLOCHE_API_KEYS": "team:s3cret-key"}, timeout=START_TIMEOUT) as server:
        host = server.url.removeprefix("http://")
        out = run_sdk(jhansi_venv, f"http://jhansi:s3cret-key@{host}/jhansi", AUTH_SCRIPT)
        assert out == {"exec": "authorised\n", "status": "created", "wrong_key": 401}
        anonymous = httpx.post(f"{server.url}/jhansi/v1/sandboxes", json={"language": "python"})
        assert anonymous.status_code == 401 and "JHANSI_BASE_URL" in anonymous.json()["detail"]
        with_bearer = {"Authorization": "Bearer s3cret-key"}
        assert httpx.post(f"{server.url}/jhansi/v1/sandboxes", json={}, headers=with_bearer).status_code == 201
