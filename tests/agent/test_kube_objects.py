"""The objects of one sandbox node (cluster/objects.py) validate against the Kubernetes schemas and say what the
backend promises: the agent on the sandbox's claim, gVisor when asked, traffic only from API servers and only to
the egress proxy, the database and DNS."""

from __future__ import annotations

import kubernetes_validate
import pytest

from cloche.cluster.objects import SandboxPods, is_pod_node, new_node, object_name
from cloche.settings import Settings

KUBERNETES = "1.30.0"  # as tests/deploy


def configured(**settings: object) -> SandboxPods:
    return SandboxPods.from_settings(Settings(**settings))  # type: ignore[arg-type]


PLAIN = configured()
EVERYTHING = configured(
    kube_namespace="sandboxes",
    kube_storage_class="fast-ssd",
    kube_runtime_class="gvisor",
    kube_environments_claim="cloche-environments",
    kube_database_cidrs="10.0.0.12/32, 10.0.1.0/24",
    kube_volume_gb=25,
    kube_agent_port=9000,
)


@pytest.mark.parametrize("pods", [PLAIN, EVERYTHING], ids=["defaults", "every-option"])
def test_each_object_validates_strictly(pods: SandboxPods) -> None:
    node = new_node()
    for manifest in (pods.claim(node), pods.pod(node), pods.policy(node)):
        kubernetes_validate.validate(manifest, KUBERNETES, strict=True)
        assert manifest["metadata"]["name"] == object_name(node)
        assert manifest["metadata"]["namespace"] == pods.namespace


def test_node_names_are_dns_labels_of_this_backend() -> None:
    names = {new_node() for _ in range(50)}
    assert len(names) == 50 and all(is_pod_node(n) for n in names)
    assert all(len(object_name(n)) <= 63 and object_name(n).replace("-", "").isalnum() for n in names)
    assert not is_pod_node("a1") and not is_pod_node("local")


def test_the_pod_runs_the_agent_on_the_claim_with_its_node_name() -> None:
    node = new_node()
    pod = EVERYTHING.pod(node)
    spec = pod["spec"]
    (container,) = spec["containers"]
    assert container["command"] == ["cloche", "serve", "--agent"]
    env = {e["name"]: e for e in container["env"]}
    assert env["CLOCHE_NODE_NAME"]["value"] == node and env["CLOCHE_PORT"]["value"] == "9000"
    assert env["CLOCHE_AGENT_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "cloche-secrets", "key": "agent-token"}
    assert set(env) <= {f"CLOCHE_{name.upper()}" for name in Settings.model_fields}
    # The policy lets the pod reach only the egress proxy, so the agent's own proxy must leave through it.
    assert env["CLOCHE_EGRESS_UPSTREAM_PROXY"]["value"] == "http://cloche-egress:3128"
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["workspace"]["persistentVolumeClaim"] == {"claimName": object_name(node)}
    assert volumes["environments"]["persistentVolumeClaim"] == {"claimName": "cloche-environments", "readOnly": True}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["environments"]["readOnly"] is True and "readOnly" not in mounts["workspace"]
    assert spec["runtimeClassName"] == "gvisor" and spec["automountServiceAccountToken"] is False
    assert "runtimeClassName" not in PLAIN.pod(node)["spec"] and len(PLAIN.pod(node)["spec"]["volumes"]) == 1
    claim = EVERYTHING.claim(node)["spec"]
    assert (claim["storageClassName"], claim["resources"]["requests"]["storage"]) == ("fast-ssd", "25Gi")
    assert "storageClassName" not in PLAIN.claim(node)["spec"]


def test_the_policy_lets_in_only_api_servers_and_out_only_to_the_proxy_database_and_dns() -> None:
    node = new_node()
    spec = EVERYTHING.policy(node)["spec"]
    assert spec["podSelector"] == {"matchLabels": {"cloche.dev/node": node}}
    assert spec["policyTypes"] == ["Ingress", "Egress"]  # both listed: whatever no rule allows is denied
    (ingress,) = spec["ingress"]
    assert ingress["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "cloche-api"}}}]
    assert ingress["ports"] == [{"port": 9000, "protocol": "TCP"}]
    proxy, dns, database = spec["egress"]
    assert proxy["to"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "cloche-egress"}}}]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert database["to"] == [{"ipBlock": {"cidr": "10.0.0.12/32"}}, {"ipBlock": {"cidr": "10.0.1.0/24"}}]
    assert len(PLAIN.policy(node)["spec"]["egress"]) == 2  # no database rule unless its addresses are given
    assert all("ipBlock" not in peer for rule in spec["egress"][:2] for peer in rule["to"])
