"""The Kubernetes objects of one sandbox node, as plain manifests (pure: no client, no cluster).

A sandbox node is a pod running the node agent (``cloche serve --agent``) whose data dir is the sandbox's
PersistentVolumeClaim, and a NetworkPolicy: only API server pods reach the agent, and the pod reaches only the
egress proxy, the database and the cluster's DNS. The three objects share one name, ``cloche-<node>``; the node name
is the agent's ``CLOCHE_NODE_NAME``, recorded as its sandbox's placement.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from cloche.settings import Settings

NODE_PREFIX = "pod-"  # node names this backend made; other placements are not its to resume
APP_LABEL = "app.kubernetes.io/name"
SANDBOX_APP = "cloche-sandbox"
API_APP = "cloche-api"
EGRESS_APP = "cloche-egress"
NODE_LABEL = "cloche.dev/node"
LAST_USED = "cloche.dev/last-used"  # epoch seconds of the newest use any API server saw (scale to zero)
DATA_DIR = "/var/lib/cloche"
ENVIRONMENTS_DIR = "/var/lib/cloche-environments"
Manifest = dict[str, Any]


def new_node() -> str:
    """A fresh node name: a valid DNS label inside ``cloche-<node>`` (63 characters at most)."""
    return NODE_PREFIX + secrets.token_hex(6)


def is_pod_node(node: str) -> bool:
    return node.startswith(NODE_PREFIX)


def object_name(node: str) -> str:
    return f"cloche-{node}"


@dataclass(frozen=True)
class SandboxPods:
    """What every sandbox node gets, from the settings (``CLOCHE_KUBE_*``)."""

    namespace: str
    image: str
    secret: str
    agent_config: str
    agent_port: int
    storage_class: str | None
    volume_gb: int
    runtime_class: str | None
    environments_claim: str | None
    egress_port: int
    database_cidrs: tuple[str, ...]
    database_port: int

    @classmethod
    def from_settings(cls, settings: Settings) -> SandboxPods:
        return cls(
            namespace=settings.kube_namespace,
            image=settings.kube_image,
            secret=settings.kube_secret,
            agent_config=settings.kube_agent_config,
            agent_port=settings.kube_agent_port,
            storage_class=settings.kube_storage_class,
            volume_gb=settings.kube_volume_gb,
            runtime_class=settings.kube_runtime_class,
            environments_claim=settings.kube_environments_claim,
            egress_port=settings.kube_egress_port,
            database_cidrs=settings.host_list(settings.kube_database_cidrs),
            database_port=settings.kube_database_port,
        )

    def _metadata(self, node: str) -> Manifest:
        labels = {APP_LABEL: SANDBOX_APP, "app.kubernetes.io/part-of": "cloche", NODE_LABEL: node}
        return {"name": object_name(node), "namespace": self.namespace, "labels": labels}

    def claim(self, node: str) -> Manifest:
        """The workspace claim: the agent's whole data dir, so a new pod on it finds its sandbox as it was."""
        spec: Manifest = {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": f"{self.volume_gb}Gi"}},
        }
        if self.storage_class is not None:
            spec["storageClassName"] = self.storage_class
        return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": self._metadata(node), "spec": spec}

    def pod(self, node: str) -> Manifest:
        def secret(name: str, key: str) -> Manifest:
            return {"name": name, "valueFrom": {"secretKeyRef": {"name": self.secret, "key": key}}}

        env = [
            {"name": "CLOCHE_NODE_NAME", "value": node},
            {"name": "CLOCHE_HOST", "value": "0.0.0.0"},
            {"name": "CLOCHE_PORT", "value": str(self.agent_port)},
            {"name": "CLOCHE_DATA_DIR", "value": DATA_DIR},
            # Its policy lets the pod reach only the egress proxy: installs leave through it.
            {"name": "CLOCHE_EGRESS_UPSTREAM_PROXY", "value": f"http://{EGRESS_APP}:{self.egress_port}"},
            secret("CLOCHE_DATABASE_URL", "database-url"),
            secret("CLOCHE_AGENT_TOKEN", "agent-token"),
            secret("CLOCHE_SECRETS_KEY", "secrets-key"),
        ]
        mounts: list[Manifest] = [{"name": "workspace", "mountPath": DATA_DIR}]
        volumes: list[Manifest] = [{"name": "workspace", "persistentVolumeClaim": {"claimName": object_name(node)}}]
        if self.environments_claim is not None:
            mounts.append({"name": "environments", "mountPath": ENVIRONMENTS_DIR, "readOnly": True})
            volumes.append(
                {
                    "name": "environments",
                    "persistentVolumeClaim": {"claimName": self.environments_claim, "readOnly": True},
                }
            )
        container: Manifest = {
            "name": "agent",
            "image": self.image,
            "command": ["cloche", "serve", "--agent"],
            "ports": [{"name": "agent", "containerPort": self.agent_port}],
            "env": env,
            "envFrom": [{"configMapRef": {"name": self.agent_config, "optional": True}}],
            # The jail needs what `cloche serve` needs on a host: user namespaces, cgroups, loop devices.
            "securityContext": {"privileged": True},
            "readinessProbe": {"httpGet": {"path": "/health", "port": "agent"}, "periodSeconds": 2},
            "volumeMounts": mounts,
        }
        spec: Manifest = {
            "containers": [container],
            "volumes": volumes,
            "automountServiceAccountToken": False,  # the agent needs nothing from the Kubernetes API
            "enableServiceLinks": False,
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
        }
        if self.runtime_class is not None:
            spec["runtimeClassName"] = self.runtime_class
        return {"apiVersion": "v1", "kind": "Pod", "metadata": self._metadata(node), "spec": spec}

    def policy(self, node: str) -> Manifest:
        """Ingress from API server pods on the agent's port; egress to the egress proxy, the database, DNS."""

        def pods(app: str) -> Manifest:
            return {"podSelector": {"matchLabels": {APP_LABEL: app}}}

        egress: list[Manifest] = [
            {"to": [pods(EGRESS_APP)], "ports": [{"port": self.egress_port, "protocol": "TCP"}]},
            {
                "to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
            },
        ]
        if self.database_cidrs:
            egress.append(
                {
                    "to": [{"ipBlock": {"cidr": cidr}} for cidr in self.database_cidrs],
                    "ports": [{"port": self.database_port, "protocol": "TCP"}],
                }
            )
        spec: Manifest = {
            "podSelector": {"matchLabels": {NODE_LABEL: node}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [pods(API_APP)], "ports": [{"port": self.agent_port, "protocol": "TCP"}]}],
            "egress": egress,
        }
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": self._metadata(node),
            "spec": spec,
        }
