"""The shipped Kubernetes manifests validate against the Kubernetes schemas and agree with cloche's settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from cloche.settings import Settings

MANIFESTS = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "cloche.yaml"
KUBERNETES = "1.30.0"


def documents() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(MANIFESTS.read_text()) if doc]


@pytest.mark.parametrize("doc", documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_each_object_validates_strictly(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES, strict=True)  # raises naming the bad field


def _env(kind: str, name: str) -> dict[str, dict[str, Any]]:
    obj = next(d for d in documents() if d["kind"] == kind and d["metadata"]["name"] == name)
    (container,) = obj["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e for e in container["env"]}


def test_every_variable_is_a_setting_and_the_api_names_every_agent_replica() -> None:
    agent, api = _env("StatefulSet", "cloche-agent"), _env("Deployment", "cloche-api")
    known = {f"CLOCHE_{name.upper()}" for name in Settings.model_fields}
    assert set(agent) | set(api) <= known
    statefulset = next(d for d in documents() if d["kind"] == "StatefulSet")
    replicas = statefulset["spec"]["replicas"]
    listed = Settings(agents=api["CLOCHE_AGENTS"]["value"]).agent_urls()
    assert list(listed) == [f"cloche-agent-{i}" for i in range(replicas)]  # CLOCHE_NODE_NAME is the pod name
    assert all(url.endswith(".cloche-agent.cloche.svc:8500") for url in listed.values())
