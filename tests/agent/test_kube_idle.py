"""Scale to zero with two API servers on one namespace (cluster/nodes.py): idleness is the newest use any of them
saw (written on the pod), a request in flight keeps its pod, and an idle pod goes while its claim stays. The
official client talks to the test's Kubernetes API over HTTP; no agent is reached, so pods are made ready by a
kubelet that only reports them ready."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kube_api_server import FakeKubernetes

from cloche.cluster.kube import KubeObjects, api_client
from cloche.cluster.nodes import KubernetesNodes
from cloche.cluster.objects import LAST_USED, SandboxPods, new_node, object_name
from cloche.errors import AgentUnavailable
from cloche.settings import Settings

NAMESPACE = "cloche"
IDLE = 2.0


@pytest.fixture
def api() -> Iterator[FakeKubernetes]:
    fake = FakeKubernetes(token="t").start()

    def ready(pod: dict[str, Any]) -> None:
        status = {"phase": "Running", "podIP": "127.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]}
        fake.set_pod_status(pod["metadata"]["namespace"], pod["metadata"]["name"], status)

    fake.on_pod_created = ready
    fake.on_pod_deleted = lambda pod: fake.remove(pod["metadata"]["namespace"], pod["metadata"]["name"])
    yield fake
    fake.stop()


def server(api: FakeKubernetes, config: Path, gone: set[str] | None = None) -> KubernetesNodes:
    """One API server's backend; the sandboxes of the nodes in ``gone`` were reaped (not live in the store)."""
    objects = KubeObjects(api_client(api.kubeconfig(config, NAMESPACE)), NAMESPACE)
    pods = SandboxPods.from_settings(Settings(kube_namespace=NAMESPACE))
    return KubernetesNodes(objects, pods, None, IDLE, 5, live=lambda node: node not in (gone or set()))


async def make_node(nodes: KubernetesNodes) -> str:
    node = new_node()
    for manifest in (nodes.pods.claim(node), nodes.pods.policy(node), nodes.pods.pod(node)):
        await nodes.objects.create(manifest)
    return node


def test_a_pod_goes_only_when_no_api_server_used_it_for_the_idle_time(api: FakeKubernetes, tmp_path: Path) -> None:
    async def scenario() -> None:
        first, second = server(api, tmp_path / "a"), server(api, tmp_path / "b")
        node = await make_node(first)
        name = object_name(node)
        try:
            assert await second.scale_down_idle() == []  # the second server sees the pod from now on
            started = time.time()
            while time.time() - started < IDLE * 1.5:  # the first server keeps using it ...
                async with first.using(node):
                    await asyncio.sleep(0.1)
                assert await first.scale_down_idle() == []  # ... and writes when it did on the pod
                await asyncio.sleep(0.3)
            pod = api.get("pods", NAMESPACE, name)
            assert pod is not None and float(pod["metadata"]["annotations"][LAST_USED]) >= started
            assert await second.scale_down_idle() == []  # its own last sight is old, the pod's mark is not
            async with first.using(node):  # a request in flight through the first server
                await asyncio.sleep(IDLE + 0.5)
                assert await first.scale_down_idle() == []
            await asyncio.sleep(IDLE + 1.1)
            assert await second.scale_down_idle() == [node]
            assert name not in api.names("pods", NAMESPACE)
            assert api.names("persistentvolumeclaims", NAMESPACE) == {name}
            assert api.names("networkpolicies", NAMESPACE) == {name}
            async with second.using(node):  # the next use starts a pod on the same claim
                pass
            assert name in api.names("pods", NAMESPACE) and api.count("POST", "pods", NAMESPACE) == 2
            await second.delete(node)
            assert all(not api.names(kind, NAMESPACE) for kind in ("pods", "persistentvolumeclaims", "networkpolicies"))
        finally:
            await first.close()
            await second.close()

    asyncio.run(scenario())


def test_an_idle_node_whose_sandbox_was_reaped_loses_every_object(api: FakeKubernetes, tmp_path: Path) -> None:
    async def scenario() -> None:
        gone: set[str] = set()
        nodes = server(api, tmp_path / "a", gone)
        kept, reaped = await make_node(nodes), await make_node(nodes)
        gone.add(reaped)  # its agent reaped its sandbox (idle TTL)
        try:
            assert await nodes.scale_down_idle() == []
            await asyncio.sleep(IDLE + 1.1)
            assert sorted(await nodes.scale_down_idle()) == sorted([kept, reaped])
            assert api.names("persistentvolumeclaims", NAMESPACE) == {object_name(kept)}
            assert api.names("networkpolicies", NAMESPACE) == {object_name(kept)}
            assert not api.names("pods", NAMESPACE)
        finally:
            await nodes.close()

    asyncio.run(scenario())


def test_an_api_server_that_does_not_answer_is_agent_unavailable(tmp_path: Path) -> None:
    async def scenario() -> None:
        gone = FakeKubernetes(token="t")  # never started: its port is closed
        config = gone.kubeconfig(tmp_path / "config", NAMESPACE)
        gone.server.server_close()
        objects = KubeObjects(api_client(config), NAMESPACE)
        objects._api.configuration.retries = 0
        try:
            with pytest.raises(AgentUnavailable, match=r"Kubernetes API does not answer \(read Pod cloche-x\)"):
                await objects.read("Pod", "cloche-x")
            with pytest.raises(AgentUnavailable, match="did not become ready within 1 s"):
                await objects.wait_ready("cloche-x", 1)
        finally:
            objects.close()

    asyncio.run(scenario())
