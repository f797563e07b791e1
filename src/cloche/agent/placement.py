"""Which node agent holds which sandbox, and where a new one goes.

A sandbox's row records its placement (the node's name); the API server keeps one agent per configured node:
the in-process agent alone (single node), or a ``RemoteAgent`` per ``CLOCHE_AGENTS`` entry. New sandboxes go
round-robin over the agents, passing over one that does not answer. With ``CLOCHE_BACKEND=kubernetes`` nodes are
made on demand instead, one per sandbox (``cloche/cluster/``).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Protocol

from cloche.agent.local import LocalAgent
from cloche.agent.protocol import NodeAgent
from cloche.agent.remote import RemoteAgent
from cloche.errors import AgentUnavailable, StoreUnavailable, Unsupported
from cloche.models import CreateSandbox, Sandbox
from cloche.service.sandboxes import SandboxService
from cloche.settings import Settings


class NodesOnDemand(Protocol):
    """Nodes made per sandbox (the Kubernetes backend): a new one for each sandbox, the agent of one by name."""

    def agent(self, node: str) -> NodeAgent | None:
        """The agent of ``node``, or None when the node is not one of these."""

    async def create(self, tenant: str, request: CreateSandbox) -> Sandbox:
        """A new node with the sandbox on it."""

    async def run(self) -> None:
        """Their upkeep (e.g. scaling idle nodes down), a task of the app for its lifetime."""

    async def close(self) -> None: ...


class Placement:
    def __init__(
        self,
        agents: Mapping[str, NodeAgent],
        sandboxes: SandboxService,
        local_name: str,
        on_demand: NodesOnDemand | None = None,
    ) -> None:
        if not agents and on_demand is None:
            raise ValueError("at least one node agent")
        self.agents = dict(agents)
        self.on_demand = on_demand
        self._sandboxes = sandboxes
        self._local_name = local_name  # this process's own node (CLOCHE_NODE_NAME)
        self._turn = itertools.cycle(list(self.agents))
        # One node in this process (the default): every sandbox is its, and its services look the row up
        # themselves, so the single-node path costs no extra read.
        only = next(iter(self.agents.values()), None)
        alone = len(self.agents) == 1 and on_demand is None
        self._only: NodeAgent | None = only if alone and isinstance(only, LocalAgent) else None

    def holding(self, tenant: str, sandbox_id: str) -> NodeAgent:
        """The agent of the node the sandbox lives on (after the tenant check: another's sandbox is a 404)."""
        if self._only is not None:
            return self._only
        row = self._sandboxes.get_row(tenant, sandbox_id)
        agent = self.agents.get(row.placement)
        if agent is None and self.on_demand is not None:
            agent = self.on_demand.agent(row.placement)
        if agent is None:
            raise AgentUnavailable(
                f"sandbox {sandbox_id} lives on node {row.placement!r}, which this server has no agent for "
                "(CLOCHE_AGENTS, or CLOCHE_NODE_NAME for the in-process node)"
            )
        return agent

    def require_local(self, tenant: str, sandbox_id: str, feature: str) -> None:
        """``feature`` is not on the agent protocol yet: it works only for sandboxes of this process's node."""
        if self._only is None and self.holding(tenant, sandbox_id).name != self._local_name:
            raise Unsupported(
                f"{feature} run only on the API server's own node, and sandbox {sandbox_id} lives on a node agent "
                "(CLOCHE_AGENTS); this version of the agent protocol does not carry them"
            )

    async def create(self, tenant: str, request: CreateSandbox) -> Sandbox:
        """On a node of its own (on demand), or on the next agent in turn; one that does not answer is passed over
        (each agent tried once)."""
        if self.on_demand is not None:
            return await self.on_demand.create(tenant, request)
        unavailable: AgentUnavailable | None = None
        for _ in range(len(self.agents)):
            agent = self.agents[next(self._turn)]
            try:
                return await agent.create(tenant, request)
            except AgentUnavailable as exc:
                unavailable = exc
        assert unavailable is not None
        raise AgentUnavailable(f"no node agent answers; the last one said: {unavailable.message}")

    async def close(self) -> None:
        for agent in self.agents.values():
            await agent.close()
        if self.on_demand is not None:
            await self.on_demand.close()


def node_agents(settings: Settings, local: LocalAgent) -> dict[str, NodeAgent]:
    """The configured agents by node name: ``CLOCHE_AGENTS``, or this process's own node alone."""
    configured = settings.agent_urls()
    if not configured:
        return {local.name: local}
    if settings.database_url is None:
        raise StoreUnavailable("CLOCHE_AGENTS needs a database the agents share: set CLOCHE_DATABASE_URL")
    token = settings.agent_token.get_secret_value() if settings.agent_token else None
    return {name: RemoteAgent(name, url, token) for name, url in configured.items()}


def placement_for(settings: Settings, local: LocalAgent, sandboxes: SandboxService) -> Placement:
    """The placement ``CLOCHE_BACKEND`` asks for: static (this node or ``CLOCHE_AGENTS``), or Kubernetes pods
    (beside any static agents, whose sandboxes keep working)."""
    if settings.backend != "kubernetes":
        return Placement(node_agents(settings, local), sandboxes, settings.node_name)
    if settings.database_url is None:
        raise StoreUnavailable("CLOCHE_BACKEND=kubernetes needs a database its pods share: set CLOCHE_DATABASE_URL")
    try:
        from cloche.cluster.nodes import KubernetesNodes  # the optional extra, loaded only when chosen
    except ImportError as exc:
        raise AgentUnavailable(
            f"CLOCHE_BACKEND=kubernetes needs the Kubernetes client ({exc}): pip install 'cloche[kubernetes]'"
        ) from exc
    static = node_agents(settings, local) if settings.agents else {}
    nodes = KubernetesNodes.from_settings(settings, lambda node: bool(sandboxes.store.live_sandbox_ids(node)))
    return Placement(static, sandboxes, settings.node_name, nodes)
