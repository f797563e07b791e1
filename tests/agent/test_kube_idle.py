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


def server(api: FakeKubernetes, config: Path) -> KubernetesNodes:
    """One API server's backend."""
    objects = KubeObjects(api_client(api.kubeconfig(config, NAMESPACE)), NAMESPACE)
    pods = SandboxPods.from_settings(Settings(kube_namespace=NAMESPACE))
    return KubernetesNodes(objects, pods, None, idle_seconds=IDLE, ready_seconds=5)


def test_a_pod_goes_only_when_no_api_server_used_it_for_the_idle_time(api: FakeKubernetes, tmp_path: Path) -> None:
    async def scenario() -> None:
        first, second = server(api, tmp_path / "a"), server(api, tmp_path / "b")
        node = new_node()
        name = object_name(node)
        for manifest in (first.pods.claim(node), first.pods.policy(node), first.pods.pod(node)):
            await first.objects.create(manifest)
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
