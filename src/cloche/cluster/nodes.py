"""The Kubernetes backend: a node per sandbox, made on demand, scaled to zero when idle.

Creating a sandbox makes its node's claim, policy and pod (``objects.py``), watches the pod until it is ready and
asks the agent in it to create the sandbox (the row's placement is the node's name). Every later request finds
the node by that placement; a node whose pod was deleted gets a new pod on the same claim first (resume: the agent
starts over the same data dir and finds the workspace as it was). A pod nobody used for ``kube_idle_seconds`` is
deleted (its claim and policy stay). Deleting the sandbox removes all three. Any API server may resume or scale
down any node: the newest use is kept on the pod as an annotation, so several API servers agree on idleness.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from cloche.agent.remote import RemoteAgent
from cloche.cluster.kube import KubeObjects, api_client, pod_ready
from cloche.cluster.objects import LAST_USED, NODE_LABEL, SandboxPods, is_pod_node, new_node, object_name
from cloche.cluster.pod_agent import PodAgent
from cloche.errors import AgentUnavailable
from cloche.models import CreateSandbox, Sandbox
from cloche.settings import Settings

log = logging.getLogger("cloche.cluster")
KINDS = ("Pod", "NetworkPolicy", "PersistentVolumeClaim")  # deletion order: the pod lets go of the claim first


@dataclass
class NodeUse:
    """What this API server knows of one node: its agent while the pod is up, its use."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one resume at a time
    agent: RemoteAgent | None = None
    in_flight: int = 0
    last_used: float = field(default_factory=time.time)
    annotated: float = 0.0  # the last-used time this server last wrote on the pod


class KubernetesNodes:
    def __init__(
        self,
        objects: KubeObjects,
        pods: SandboxPods,
        token: str | None,
        idle_seconds: float,
        ready_seconds: float,
        live: Callable[[str], bool],
    ) -> None:
        self.objects = objects
        self._live = live  # does the node still hold a live sandbox (the shared store's word)
        self.pods = pods
        self._token = token
        self.idle_seconds = idle_seconds
        self.ready_seconds = ready_seconds
        self._nodes: dict[str, NodeUse] = {}

    @classmethod
    def from_settings(cls, settings: Settings, live: Callable[[str], bool]) -> KubernetesNodes:
        token = settings.agent_token.get_secret_value() if settings.agent_token else None
        objects = KubeObjects(api_client(settings.kube_config), settings.kube_namespace)
        pods = SandboxPods.from_settings(settings)
        return cls(objects, pods, token, settings.kube_idle_seconds, settings.kube_ready_seconds, live)

    def agent(self, node: str) -> PodAgent | None:
        return PodAgent(node, self) if is_pod_node(node) else None

    def _use(self, node: str) -> NodeUse:
        return self._nodes.setdefault(node, NodeUse())

    async def _start_pod(self, node: str) -> RemoteAgent:
        name = object_name(node)
        await self.objects.create(self.pods.policy(node))  # a no-op on resume, unless someone removed it
        old = await self.objects.read("Pod", name)
        if old is not None and old.metadata.deletion_timestamp is not None:  # scaled down a moment ago
            await self.objects.wait_gone(name, self.ready_seconds)
        await self.objects.create(self.pods.pod(node))
        ip = await self.objects.wait_ready(name, self.ready_seconds)
        return RemoteAgent(node, f"http://{ip}:{self.pods.agent_port}", self._token)

    async def create(self, tenant: str, request: CreateSandbox) -> Sandbox:
        """A new node with the sandbox on it; on any failure, none of its objects are left."""
        node = new_node()
        use = self._use(node)
        use.in_flight += 1  # a pod still starting is not idle
        try:
            await self.objects.create(self.pods.claim(node))
            use.agent = await self._start_pod(node)
            return await use.agent.create(tenant, request)
        except BaseException:
            await self._remove(node)
            raise
        finally:
            use.in_flight -= 1
            use.last_used = time.time()

    @contextlib.asynccontextmanager
    async def using(self, node: str) -> AsyncIterator[RemoteAgent]:
        """The node's agent, its pod started (again) first if need be; counted as in use meanwhile."""
        use = self._use(node)
        use.in_flight += 1
        try:
            async with use.lock:
                if use.agent is None:
                    use.agent = await self._resume(node)
                agent = use.agent
            try:
                yield agent
            except AgentUnavailable:
                await self._forget_agent(use, agent)  # the pod went away: the next request starts it again
                raise
        finally:
            use.in_flight -= 1
            use.last_used = time.time()

    async def _resume(self, node: str) -> RemoteAgent:
        name = object_name(node)
        if await self.objects.read("PersistentVolumeClaim", name) is None:
            raise AgentUnavailable(f"sandbox node {node} has no claim {name} any more: its workspace is gone")
        pod = await self.objects.read("Pod", name)
        if pod is not None and pod_ready(pod) and pod.status.pod_ip and pod.metadata.deletion_timestamp is None:
            return RemoteAgent(node, f"http://{pod.status.pod_ip}:{self.pods.agent_port}", self._token)
        log.info("sandbox pod resumed", extra={"node": node})
        try:
            return await self._start_pod(node)
        except AgentUnavailable:
            await self.objects.delete("Pod", name)  # a pod that never got ready is not left behind
            raise

    async def _forget_agent(self, use: NodeUse, agent: RemoteAgent) -> None:
        if use.agent is agent:
            use.agent = None
        await agent.close()

    async def delete(self, node: str) -> None:
        """The node's objects; its sandbox was deleted by its agent first."""
        await self._remove(node)

    async def _remove(self, node: str) -> None:
        use = self._nodes.pop(node, None)
        if use is not None and use.agent is not None:
            await use.agent.close()
        for kind in KINDS:
            await self.objects.delete(kind, object_name(node))

    async def scale_down_idle(self) -> list[str]:
        """Delete the pods no API server used for ``idle_seconds`` (and every object of a node whose sandbox its
        agent reaped); the nodes whose pods went."""
        now = time.time()
        stopped: list[str] = []
        for pod in await self.objects.sandbox_pods():
            node = (pod.metadata.labels or {}).get(NODE_LABEL, "")
            if not is_pod_node(node):
                continue
            use = self._use(node)
            if use.in_flight:
                use.last_used = now
            seen = float((pod.metadata.annotations or {}).get(LAST_USED, 0) or 0)
            created = pod.metadata.creation_timestamp.timestamp() if pod.metadata.creation_timestamp else now
            newest = max(seen, use.last_used, created)
            if now - newest < self.idle_seconds:
                if use.last_used > max(seen, use.annotated) + 1:  # tell the other API servers
                    await self.objects.annotate(pod.metadata.name, LAST_USED, f"{use.last_used:.0f}")
                    use.annotated = use.last_used
                continue
            async with use.lock:
                if use.in_flight:  # a request came in meanwhile
                    continue
                if not await asyncio.to_thread(self._live, node):  # its agent reaped the sandbox (idle TTL)
                    await self._remove(node)
                    log.info("sandbox node removed: its sandbox is gone", extra={"node": node})
                else:
                    if use.agent is not None:
                        await self._forget_agent(use, use.agent)
                    await self.objects.delete("Pod", pod.metadata.name)
                    log.info("idle sandbox pod deleted (scaled to zero)", extra={"node": node})
            stopped.append(node)
        return stopped

    async def run(self) -> None:
        """Scale idle pods down every few seconds, for ever (a task of the app)."""
        while True:
            await asyncio.sleep(min(30.0, self.idle_seconds / 4))
            try:
                await self.scale_down_idle()
            except Exception:  # the API may be away for a moment; the next tick retries
                log.exception("scaling idle sandbox pods down failed")

    async def close(self) -> None:
        for use in self._nodes.values():
            if use.agent is not None:
                await use.agent.close()
        self._nodes.clear()
        self.objects.close()
