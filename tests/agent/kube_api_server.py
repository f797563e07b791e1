"""A small Kubernetes API server for tests: real HTTP, the REST paths and JSON of the Kubernetes API for the
objects the backend uses (pods, persistent volume claims, network policies), with resource versions, label and
field selectors, watches, merge patches and deletes. It records every request and keeps the objects, so a test
sees exactly what the official client created, read, watched and deleted.

A kubelet stands in for the nodes through two hooks: ``on_pod_created`` for each new pod (it reports the pod's
status back with ``set_pod_status``, a MODIFIED event as a kubelet's status update is) and ``on_pod_deleted`` when a
pod is deleted: as on a cluster, the pod first only gets a ``deletionTimestamp`` and stays until the kubelet has
stopped it and calls ``remove``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

Obj = dict[str, Any]
KINDS = {  # collection path segment -> (group prefix, kind)
    "pods": ("/api/v1", "Pod"),
    "persistentvolumeclaims": ("/api/v1", "PersistentVolumeClaim"),
    "networkpolicies": ("/apis/networking.k8s.io/v1", "NetworkPolicy"),
}


class FakeKubernetes:
    def __init__(self, token: str) -> None:
        self.token = token
        self.objects: dict[tuple[str, str, str], Obj] = {}  # (resource, namespace, name) -> object
        self.events: list[tuple[int, str, str, str, Obj]] = []  # (rv, type, resource, namespace, object)
        self.requests: list[tuple[str, str]] = []  # (method, path with query)
        self.version = 100
        self.changed = threading.Condition()
        self.on_pod_created: Callable[[Obj], None] = lambda pod: None
        self.on_pod_deleted: Callable[[Obj], None] = lambda pod: None
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FakeKubernetes:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def kubeconfig(self, path: Path, namespace: str) -> Path:
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "test", "cluster": {"server": self.url}}],
                    "users": [{"name": "test", "user": {"token": self.token}}],
                    "contexts": [
                        {"name": "test", "context": {"cluster": "test", "user": "test", "namespace": namespace}}
                    ],
                    "current-context": "test",
                }
            )
        )
        return path

    def names(self, resource: str, namespace: str) -> set[str]:
        with self.changed:
            return {name for (res, ns, name) in self.objects if res == resource and ns == namespace}

    def get(self, resource: str, namespace: str, name: str) -> Obj | None:
        with self.changed:
            found = self.objects.get((resource, namespace, name))
            return copy.deepcopy(found) if found else None

    def count(self, method: str, resource: str, namespace: str) -> int:
        """Requests of ``method`` on one collection (creates: POST; deletes: DELETE of an item)."""
        prefix = f"{KINDS[resource][0]}/namespaces/{namespace}/{resource}"
        return sum(1 for m, path in self.requests if m == method and path.startswith(prefix))

    def _record(self, kind: str, resource: str, namespace: str, obj: Obj) -> None:
        """Under the lock: a new resource version on ``obj`` and a watch event for it."""
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        self.events.append((self.version, kind, resource, namespace, copy.deepcopy(obj)))
        self.changed.notify_all()

    def set_pod_status(self, namespace: str, name: str, status: Obj) -> bool:
        with self.changed:
            pod = self.objects.get(("pods", namespace, name))
            if pod is None:
                return False
            pod["status"] = status
            self._record("MODIFIED", "pods", namespace, pod)
            return True

    # The REST side, called by the handler.

    def create(self, resource: str, namespace: str, body: Obj) -> tuple[int, Obj]:
        name = body["metadata"]["name"]
        with self.changed:
            if (resource, namespace, name) in self.objects:
                return 409, status(409, "AlreadyExists", f'{resource} "{name}" already exists')
            obj = copy.deepcopy(body)
            obj["metadata"] |= {
                "namespace": namespace,
                "uid": str(uuid.uuid4()),
                "creationTimestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            obj["status"] = {"phase": "Pending"} if resource == "pods" else {"phase": "Bound"}
            self.objects[(resource, namespace, name)] = obj
            self._record("ADDED", resource, namespace, obj)
            created = copy.deepcopy(obj)
        if resource == "pods":
            self.on_pod_created(created)
        return 201, created

    def patch(self, resource: str, namespace: str, name: str, body: Obj) -> tuple[int, Obj]:
        with self.changed:
            obj = self.objects.get((resource, namespace, name))
            if obj is None:
                return 404, status(404, "NotFound", f'{resource} "{name}" not found')
            merge(obj, body)
            self._record("MODIFIED", resource, namespace, obj)
            return 200, copy.deepcopy(obj)

    def delete(self, resource: str, namespace: str, name: str) -> tuple[int, Obj]:
        with self.changed:
            obj = self.objects.get((resource, namespace, name))
            if obj is None:
                return 404, status(404, "NotFound", f'{resource} "{name}" not found')
            if resource != "pods":
                return 200, self._remove(resource, namespace, name)
            terminating = "deletionTimestamp" in obj["metadata"]
            obj["metadata"]["deletionTimestamp"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            self._record("MODIFIED", resource, namespace, obj)
            answer = copy.deepcopy(obj)
        if not terminating:
            self.on_pod_deleted(answer)  # the kubelet stops it, then calls remove()
        return 200, answer

    def remove(self, namespace: str, name: str) -> None:
        """The kubelet is done with a deleted pod: it goes (the DELETED event)."""
        with self.changed:
            self._remove("pods", namespace, name)

    def _remove(self, resource: str, namespace: str, name: str) -> Obj:
        obj = self.objects.pop((resource, namespace, name))
        self._record("DELETED", resource, namespace, obj)
        return obj

    def listing(self, resource: str, namespace: str, query: dict[str, str]) -> Obj:
        with self.changed:
            items = [
                copy.deepcopy(o)
                for (res, ns, _), o in self.objects.items()
                if res == resource and ns == namespace and selected(o, query)
            ]
            return {"kind": "List", "metadata": {"resourceVersion": str(self.version)}, "items": items}

    def watch(self, resource: str, namespace: str, query: dict[str, str], send: Callable[[Obj], None]) -> None:
        """Events after ``resourceVersion`` until ``timeoutSeconds``, as a watch streams them."""
        since = int(query.get("resourceVersion") or self.version)
        deadline = time.monotonic() + float(query.get("timeoutSeconds", "30"))
        while True:
            with self.changed:
                due = [
                    (rv, kind, obj)
                    for rv, kind, res, ns, obj in self.events
                    if rv > since and res == resource and ns == namespace and selected(obj, query)
                ]
                if not due:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return
                    self.changed.wait(min(left, 0.5))
                    continue
            for rv, kind, obj in due:
                send({"type": kind, "object": obj})
                since = rv


def status(code: int, reason: str, message: str) -> Obj:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
    }


def merge(into: Obj, patch: Obj) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        elif value is None:
            into.pop(key, None)
        else:
            into[key] = copy.deepcopy(value)


def selected(obj: Obj, query: dict[str, str]) -> bool:
    labels = obj["metadata"].get("labels") or {}
    for term in filter(None, query.get("labelSelector", "").split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    for term in filter(None, query.get("fieldSelector", "").split(",")):
        key, _, value = term.partition("=")
        if key != "metadata.name" or obj["metadata"]["name"] != value:
            return False
    return True


def _handler(api: FakeKubernetes) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # a watch streams its events as chunks, as the API server does

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, code: int, body: Obj) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _route(self) -> tuple[str, str, str | None, dict[str, str]] | None:
            url = urlsplit(self.path)
            api.requests.append((self.command, self.path))
            if self.headers.get("authorization") != f"Bearer {api.token}":
                self._reply(401, status(401, "Unauthorized", "no or wrong token"))
                return None
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            for resource, (prefix, _) in KINDS.items():
                head = f"{prefix}/namespaces/"
                if url.path.startswith(head):
                    parts = url.path[len(head) :].split("/")
                    if len(parts) in (2, 3) and parts[1] == resource:
                        return resource, parts[0], (parts[2] if len(parts) == 3 else None), query
            self._reply(404, status(404, "NotFound", f"no route {url.path}"))
            return None

        def _body(self) -> Obj:
            body: Obj = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))) or b"{}")
            return body

        def do_GET(self) -> None:
            routed = self._route()
            if routed is None:
                return
            resource, namespace, name, query = routed
            if name is not None:
                found = api.get(resource, namespace, name)
                self._reply(200, found) if found else self._reply(404, status(404, "NotFound", f"{name} not found"))
            elif query.get("watch") in ("true", "True", "1"):
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()

                def send(event: Obj) -> None:
                    line = json.dumps(event).encode() + b"\n"
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                    self.wfile.flush()

                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    api.watch(resource, namespace, query, send)
                    self.wfile.write(b"0\r\n\r\n")
                self.close_connection = True
            else:
                self._reply(200, api.listing(resource, namespace, query))

        def do_POST(self) -> None:
            routed = self._route()
            if routed is not None:
                self._reply(*api.create(routed[0], routed[1], self._body()))

        def do_PATCH(self) -> None:
            routed = self._route()
            if routed is not None and routed[2] is not None:
                self._reply(*api.patch(routed[0], routed[1], routed[2], self._body()))

        def do_DELETE(self) -> None:
            routed = self._route()
            if routed is not None and routed[2] is not None:
                self._body()  # the delete options
                self._reply(*api.delete(routed[0], routed[1], routed[2]))

    return Handler
