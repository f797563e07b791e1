"""deploy/kubernetes/backend.yaml (the Kubernetes backend) validates against the Kubernetes schemas and agrees with
what the backend does: the Role grants exactly the verbs cluster/kube.py uses, the labels are the ones the sandbox
pods' policies name, every variable is a setting, every Secret key a sandbox pod reads exists."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from cloche.cluster.objects import API_APP, APP_LABEL, EGRESS_APP, SANDBOX_APP, SandboxPods
from cloche.settings import Settings

MANIFESTS = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "backend.yaml"
KUBERNETES = "1.30.0"
SETTINGS = {f"CLOCHE_{name.upper()}" for name in Settings.model_fields}


def documents() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(MANIFESTS.read_text()) if doc]


def one(kind: str, name: str) -> dict[str, Any]:
    return next(d for d in documents() if d["kind"] == kind and d["metadata"]["name"] == name)


@pytest.mark.parametrize("doc", documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_each_object_validates_strictly(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_the_role_grants_what_the_backend_does_and_no_more() -> None:
    rules = {
        (r["apiGroups"][0], res): set(r["verbs"])
        for r in one("Role", "cloche-sandboxes")["rules"]
        for res in r["resources"]
    }
    assert rules == {
        ("", "pods"): {"create", "get", "list", "watch", "patch", "delete"},
        ("", "persistentvolumeclaims"): {"create", "get", "delete"},
        ("networking.k8s.io", "networkpolicies"): {"create", "get", "delete"},
    }
    binding = one("RoleBinding", "cloche-api-sandboxes")
    api = one("Deployment", "cloche-api")["spec"]["template"]["spec"]
    assert binding["subjects"][0]["name"] == api["serviceAccountName"]
    assert api.get("automountServiceAccountToken", True)  # the client reads the service account's token


def test_the_api_servers_settings_are_real_and_choose_the_backend() -> None:
    (container,) = one("Deployment", "cloche-api")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert set(env) <= SETTINGS
    assert env["CLOCHE_BACKEND"]["value"] == "kubernetes"
    assert env["CLOCHE_KUBE_NAMESPACE"]["value"] == "cloche"
    assert set(one("ConfigMap", "cloche-agent")["data"]) <= SETTINGS
    assert one("ConfigMap", "cloche-agent")["metadata"]["name"] == Settings().kube_agent_config


def test_the_labels_and_secret_keys_match_the_sandbox_pods() -> None:
    api = one("Deployment", "cloche-api")["spec"]["template"]["metadata"]["labels"]
    egress = one("Deployment", "cloche-egress")["spec"]["template"]["metadata"]["labels"]
    assert (api[APP_LABEL], egress[APP_LABEL]) == (API_APP, EGRESS_APP)
    allowed = one("NetworkPolicy", "cloche-egress-ingress")["spec"]["ingress"][0]
    assert allowed["from"] == [{"podSelector": {"matchLabels": {APP_LABEL: SANDBOX_APP}}}]
    pods = SandboxPods.from_settings(Settings())
    assert allowed["ports"][0]["port"] == pods.egress_port
    (container,) = pods.pod("pod-0")["spec"]["containers"]
    read = {e["valueFrom"]["secretKeyRef"]["key"] for e in container["env"] if "valueFrom" in e}
    secret = one("Secret", pods.secret)
    assert read <= set(secret["stringData"])
