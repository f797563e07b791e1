"""The Kubernetes backend end to end: real API servers (``CLOCHE_BACKEND=kubernetes``) drive the official client
against a Kubernetes API served over HTTP in the test (kube_api_server.py), and a kubelet stand-in runs each pod
it is given as what the pod's spec says: a real ``cloche serve --agent`` with the pod's environment (secrets
resolved), its data dir on the pod's claim (a folder per claim, kept across pods), on an address of its own
(127.0.0.N, a pod IP). So execs really run in the jail of a sandbox's pod agent, reached through the backend.

Each API server has a namespace of its own: ``cloche`` (long idle time), ``idle`` (scales down after 3 s) and
``broken`` (an image whose pods never get ready).
"""

from __future__ import annotations

import base64
import itertools
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from kube_api_server import FakeKubernetes
from test_static_agents import start_all

from conftest import ServerProcess, free_port, traversable_dir

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # the fixture starts three API servers and pods' agents
TOKEN = "agent-token-for-kube-tests"
NEVER_READY = "registry.example/cloche:never-ready"
KINDS = ("pods", "persistentvolumeclaims", "networkpolicies")


class Kubelet:
    """Runs the pods the API server is given; stops them when they are deleted, then lets them go."""

    def __init__(self, api: FakeKubernetes, secrets: dict[str, str], root: Path) -> None:
        self.api = api
        self.secrets = secrets
        self.root = root
        self.agents: dict[str, ServerProcess] = {}  # by pod uid
        self.claim_uids: dict[str, dict[str, str]] = {}  # the sandbox's uid is in its first agent's range
        self.claim_folders: dict[tuple[str, str], str] = {}
        self.failures: list[BaseException] = []
        self._ips = itertools.count(2)
        self._lock = threading.Lock()
        api.on_pod_created = lambda pod: self._thread(self._run, pod)
        api.on_pod_deleted = lambda pod: self._thread(self._stop, pod)

    def _thread(self, target: Callable[[dict[str, Any]], None], pod: dict[str, Any]) -> None:
        threading.Thread(target=target, args=(pod,), daemon=True).start()

    def _env(self, container: dict[str, Any]) -> dict[str, str]:
        env: dict[str, str] = {}
        for entry in container["env"]:
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            env[entry["name"]] = self.secrets[ref["key"]] if ref else entry["value"]
        return env

    def _run(self, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        (container,) = spec["containers"]
        if container["image"] == NEVER_READY:
            waiting = {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{NEVER_READY}"'}
            state = {"name": "agent", "image": NEVER_READY, "imageID": "", "ready": False, "restartCount": 0}
            self.api.set_pod_status(
                meta["namespace"],
                meta["name"],
                {"phase": "Pending", "containerStatuses": [{**state, "state": {"waiting": waiting}}]},
            )
            return
        (claim,) = [v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if v["name"] == "workspace"]
        with self._lock:  # a claim keeps its folder (short: unix socket paths below it) and uid range
            folder = self.claim_folders.setdefault((meta["namespace"], claim), f"c{len(self.claim_folders)}")
            uids = self.claim_uids.setdefault(claim, ServerProcess._private_uids())
        data = self.root / folder / "data"
        data.parent.mkdir(parents=True, exist_ok=True)
        ip = f"127.0.0.{next(self._ips)}"
        env = {**self._env(container), **uids, "CLOCHE_HOST": ip, "CLOCHE_DATA_DIR": str(data)}
        srv = ServerProcess(data, env, options=("--agent",))
        srv.url = f"http://{ip}:{env['CLOCHE_PORT']}"
        with self._lock:
            self.agents[meta["uid"]] = srv
        try:
            srv.start(timeout=300)
        except RuntimeError as exc:  # deleted while it started, or a real failure the test reports
            self.failures.append(exc)
            return
        ready = {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]}
        self.api.set_pod_status(meta["namespace"], meta["name"], ready)

    def _stop(self, pod: dict[str, Any]) -> None:
        with self._lock:
            srv = self.agents.pop(pod["metadata"]["uid"], None)
        if srv is not None:
            srv.stop()
        self.api.remove(pod["metadata"]["namespace"], pod["metadata"]["name"])

    def stop_all(self) -> None:
        with self._lock:
            running = list(self.agents.values())
            self.agents.clear()
        for srv in running:
            srv.stop()


@dataclass
class Cluster:
    api: FakeKubernetes
    kubelet: Kubelet
    servers: dict[str, ServerProcess]  # by namespace
    database: str


@pytest.fixture(scope="module")
def cluster(pg_cluster: object) -> Iterator[Cluster]:
    from pg_cluster import PostgresCluster

    assert isinstance(pg_cluster, PostgresCluster)
    database = pg_cluster.new_database()
    secrets = {
        "database-url": database,
        "agent-token": TOKEN,
        "secrets-key": base64.urlsafe_b64encode(os.urandom(32)).decode(),
    }
    root = traversable_dir()
    api = FakeKubernetes(token="kube-token").start()
    kubelet = Kubelet(api, secrets, root)
    shared = {
        "CLOCHE_BACKEND": "kubernetes",
        "CLOCHE_DATABASE_URL": database,
        "CLOCHE_AGENT_TOKEN": TOKEN,
        "CLOCHE_SECRETS_KEY": secrets["secrets-key"],
        "CLOCHE_KUBE_AGENT_PORT": str(free_port()),  # every pod serves on it, each on its own address
        "CLOCHE_KUBE_RUNTIME_CLASS": "gvisor",
        "CLOCHE_KUBE_DATABASE_CIDRS": "127.0.0.1/32",
    }
    own = {
        "cloche": {},
        "idle": {"CLOCHE_KUBE_IDLE_SECONDS": "3"},
        "broken": {"CLOCHE_KUBE_IMAGE": NEVER_READY, "CLOCHE_KUBE_READY_SECONDS": "4"},
    }
    servers = {}
    for namespace, settings in own.items():
        config = api.kubeconfig(root / f"kubeconfig-{namespace}", namespace)
        env = {**shared, **settings, "CLOCHE_KUBE_NAMESPACE": namespace, "CLOCHE_KUBE_CONFIG": str(config)}
        servers[namespace] = ServerProcess(root / f"api-{namespace}", env)
    try:
        start_all(list(servers.values()))
        yield Cluster(api, kubelet, servers, database)
    finally:
        for srv in servers.values():
            srv.stop()
        kubelet.stop_all()
        api.stop()
        shutil.rmtree(root, ignore_errors=True)


def placement(database: str, sandbox_id: str) -> str:
    with psycopg.connect(database) as conn:
        row = conn.execute("SELECT placement FROM sandboxes WHERE id = %s", (sandbox_id,)).fetchone()
    assert row is not None
    return str(row[0])


def eventually(check: Callable[[], bool], seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.2)


def objects(cluster: Cluster, namespace: str) -> dict[str, set[str]]:
    return {kind: cluster.api.names(kind, namespace) for kind in KINDS}


def test_a_sandbox_lives_in_a_pod_of_its_own_and_execs_run_there(cluster: Cluster) -> None:
    server = cluster.servers["cloche"]
    with server.client() as client:
        box = client.create("python")
        node = placement(cluster.database, box.id)
        assert node.startswith("pod-")
        name = f"cloche-{node}"
        assert all(name in names for names in objects(cluster, "cloche").values())
        pod = cluster.api.get("pods", "cloche", name)
        assert pod is not None and pod["spec"]["runtimeClassName"] == "gvisor"
        (container,) = pod["spec"]["containers"]
        assert {"name": "CLOCHE_NODE_NAME", "value": node} in container["env"]
        watched = [path for method, path in cluster.api.requests if method == "GET" and "watch=" in path]
        assert any(f"metadata.name%3D{name}" in path or f"metadata.name={name}" in path for path in watched)
        box.write("main.py", "import sys\nprint('in the pod', sys.argv[1:])\n")
        assert box.exec("main.py", args=["a"]).stdout == "in the pod ['a']\n"
        streamed = list(box.stream(command="echo streamed; echo err >&2"))
        assert [e.text for e in streamed if e.kind == "stdout"] == ["streamed\n"]
        assert streamed[-1].kind == "done"
        assert [f.path for f in box.files().files] == ["main.py"]
    assert cluster.kubelet.failures == []


def test_an_idle_pod_scales_to_zero_and_resumes_on_the_same_claim_with_its_files(cluster: Cluster) -> None:
    server, api = cluster.servers["idle"], cluster.api
    with server.client() as client:
        box = client.create("python")
        box.write("keep.txt", "kept across pods")
        name = f"cloche-{placement(cluster.database, box.id)}"
        created = api.count("POST", "pods", "idle")
        eventually(lambda: name not in api.names("pods", "idle"))  # scaled to zero: the pod is gone ...
        assert api.names("persistentvolumeclaims", "idle") == {name}  # ... its claim stays
        assert api.names("networkpolicies", "idle") == {name}
        ran = box.exec(command="cat keep.txt")  # the next request starts a pod on the same claim
        assert (ran.exit_code, ran.stdout) == (0, "kept across pods")
        assert api.count("POST", "pods", "idle") == created + 1
        assert api.names("persistentvolumeclaims", "idle") == {name}
        assert api.count("POST", "persistentvolumeclaims", "idle") == 1
        pod = api.get("pods", "idle", name)
        assert pod is not None and pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == name
        box.delete()
    assert cluster.kubelet.failures == []


def test_deleting_a_sandbox_removes_its_pod_claim_and_policy(cluster: Cluster) -> None:
    server = cluster.servers["cloche"]
    with server.client() as client:
        box = client.create("python")
        name = f"cloche-{placement(cluster.database, box.id)}"
        box.write("x.txt", "x")
        box.delete()
    eventually(lambda: all(name not in names for names in objects(cluster, "cloche").values()))
    gone = httpx.get(f"{server.url}/v1/sandboxes/{box.id}")
    assert gone.status_code == 404


def test_a_pod_that_never_gets_ready_is_a_503_and_leaves_no_object(cluster: Cluster) -> None:
    server = cluster.servers["broken"]
    started = time.monotonic()
    answer = httpx.post(f"{server.url}/v1/sandboxes", json={"language": "python"}, timeout=60)
    assert answer.status_code == 503, answer.text
    error = answer.json()["error"]
    assert error["code"] == "agent_unavailable"
    assert "did not become ready within 4 s" in error["message"] and "ImagePullBackOff" in error["message"]
    assert 4 <= time.monotonic() - started < 30  # the pod had its whole ready time
    assert cluster.api.count("POST", "pods", "broken") == 1
    eventually(lambda: objects(cluster, "broken") == {kind: set() for kind in KINDS}, seconds=10)
    (node,) = {
        obj["metadata"]["labels"]["cloche.dev/node"] for _, _, kind, ns, obj in cluster.api.events if ns == "broken"
    }
    with psycopg.connect(cluster.database) as conn:
        rows = conn.execute("SELECT count(*) FROM sandboxes WHERE placement = %s", (node,)).fetchone()
    assert rows == (0,)  # the agent never ran: no sandbox row either
