"""The Kubernetes API as this backend uses it: create, read, watch, annotate and delete the objects of sandbox nodes
in one namespace, through the official ``kubernetes`` client (synchronous; each call runs in a worker thread).

Creating an object that exists and deleting one that does not are no-ops, so resuming and deleting can be repeated.
Any other refusal of the API is ``AgentUnavailable`` naming the object and the API's reason.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from cloche.cluster.objects import APP_LABEL, SANDBOX_APP, Manifest
from cloche.errors import AgentUnavailable

SANDBOX_PODS = f"{APP_LABEL}={SANDBOX_APP}"
UNREACHABLE = (OSError, HTTPError)  # no connection, retries given up (urllib3's own errors are not OSErrors)


def api_client(kube_config: Path | None) -> client.ApiClient:
    """The configured kubeconfig, else the pod's service account, else ~/.kube/config."""
    if kube_config is not None:
        return _from_kubeconfig(str(kube_config))
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        return _from_kubeconfig(None)
    return client.ApiClient(configuration)


def _from_kubeconfig(path: str | None) -> client.ApiClient:
    api: client.ApiClient = config.new_client_from_config(config_file=path)  # type: ignore[no-untyped-call]
    return api


def pod_ready(pod: Any) -> bool:
    conditions = (pod.status.conditions or []) if pod.status else []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def pod_trouble(pod: Any) -> str:
    """Why a pod is not ready, as the API tells it (phase, a waiting container's reason and message)."""
    status = pod.status
    if status is None:
        return "no status yet"
    reasons = [f"phase {status.phase}"]
    for container in status.container_statuses or []:
        waiting = container.state.waiting if container.state else None
        if waiting is not None:
            reasons.append(f"{container.name} {waiting.reason}: {waiting.message or ''}".rstrip(": "))
    return "; ".join(reasons)


class KubeObjects:
    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.namespace = namespace
        self._api = api
        self._core = client.CoreV1Api(api)
        self._net = client.NetworkingV1Api(api)

    async def _call(self, what: str, fn: Callable[..., Any], *args: Any, fine: int | None = None, **kwargs: Any) -> Any:
        """``fn`` in a worker thread; an API answer of status ``fine`` is None, any other refusal or no answer is
        ``AgentUnavailable``."""
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except ApiException as exc:
            if exc.status == fine:
                return None
            raise self._refused(what, exc) from exc
        except UNREACHABLE as exc:
            raise AgentUnavailable(f"the Kubernetes API does not answer ({what}): {exc}") from exc

    def _kind(self, kind: str) -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]]:
        """create, read, delete of one kind, each namespaced."""
        core, net = self._core, self._net
        verbs: dict[str, tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]]] = {
            "Pod": (core.create_namespaced_pod, core.read_namespaced_pod, core.delete_namespaced_pod),
            "PersistentVolumeClaim": (
                core.create_namespaced_persistent_volume_claim,
                core.read_namespaced_persistent_volume_claim,
                core.delete_namespaced_persistent_volume_claim,
            ),
            "NetworkPolicy": (
                net.create_namespaced_network_policy,
                net.read_namespaced_network_policy,
                net.delete_namespaced_network_policy,
            ),
        }
        return verbs[kind]

    @staticmethod
    def _refused(what: str, exc: ApiException) -> AgentUnavailable:
        return AgentUnavailable(f"the Kubernetes API refused to {what}: {exc.status} {exc.reason}")

    async def create(self, manifest: Manifest) -> None:
        what = f"create {manifest['kind']} {manifest['metadata']['name']}"
        create = self._kind(manifest["kind"])[0]
        await self._call(what, create, self.namespace, manifest, fine=409)  # already there: a resume, or a retry

    async def read(self, kind: str, name: str) -> Any | None:
        return await self._call(f"read {kind} {name}", self._kind(kind)[1], name, self.namespace, fine=404)

    async def delete(self, kind: str, name: str) -> None:
        await self._call(f"delete {kind} {name}", self._kind(kind)[2], name, self.namespace, fine=404)

    async def sandbox_pods(self) -> list[Any]:
        listed = await self._call(
            "list sandbox pods", self._core.list_namespaced_pod, self.namespace, label_selector=SANDBOX_PODS
        )
        return list(listed.items)

    async def annotate(self, pod: str, key: str, value: str) -> None:
        body = {"metadata": {"annotations": {key: value}}}
        await self._call(f"annotate pod {pod}", self._core.patch_namespaced_pod, pod, self.namespace, body)

    async def wait_ready(self, name: str, seconds: float) -> str:
        """Watch the pod until it is ready; its IP. Past ``seconds``: ``AgentUnavailable`` with what held it."""

        def ready(pod: Any) -> bool:
            if pod is None:
                raise AgentUnavailable(f"sandbox pod {name} was deleted before it became ready")
            return pod_ready(pod) and bool(pod.status.pod_ip) and pod.metadata.deletion_timestamp is None

        pod = await self._watch(name, seconds, ready, "become ready")
        return str(pod.status.pod_ip)

    async def wait_gone(self, name: str, seconds: float) -> None:
        """Watch a terminating pod until it is gone (a pod of the same name cannot be made before)."""
        await self._watch(name, seconds, lambda pod: pod is None, "terminate")

    async def _watch(self, name: str, seconds: float, done: Callable[[Any], bool], what: str) -> Any:
        deadline = time.monotonic() + seconds
        try:
            return await asyncio.to_thread(self._watch_pod, name, deadline, done)
        except ApiException as exc:
            trouble = f"{exc.status} {exc.reason}"
        except UNREACHABLE as exc:
            trouble = f"the Kubernetes API does not answer: {exc}"
        except TimeoutError as exc:
            trouble = str(exc)
        raise AgentUnavailable(f"sandbox pod {name} did not {what} within {seconds:g} s ({trouble})")

    def _watch_pod(self, name: str, deadline: float, done: Callable[[Any], bool]) -> Any:
        """The pod (None: gone) once ``done`` says so; watched from the version read, re-watched until the
        deadline; TimeoutError saying what the pod was doing."""
        try:
            pod: Any = self._core.read_namespaced_pod(name, self.namespace)
            version = pod.metadata.resource_version
        except ApiException as exc:
            if exc.status != 404:
                raise
            pod, version = None, None
        while not done(pod):
            left = math.ceil(deadline - time.monotonic())  # whole seconds, never short of the deadline
            if left <= 0:
                raise TimeoutError(pod_trouble(pod) if pod is not None else "not there")
            stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
                self._core.list_namespaced_pod,
                self.namespace,
                field_selector=f"metadata.name={name}",
                resource_version=version,
                timeout_seconds=left,
                _request_timeout=left + 5,
            )
            for event in stream:
                pod = None if event["type"] == "DELETED" else event["object"]
                version = event["object"].metadata.resource_version
                if done(pod):
                    stream.close()
                    break
        return pod

    def close(self) -> None:
        self._api.close()  # type: ignore[no-untyped-call]
