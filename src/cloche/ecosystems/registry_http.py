"""Host-side reads of a package registry's JSON documents (PyPI's JSON API, the npm registry).

One ``httpx`` client per registry, made on first use and shared by the threads that look names up. A read
answers the document, or None when the registry does not know the name; anything else that goes wrong
(network, timeout, 5xx, an oversized or malformed answer) raises the caller's ``unavailable`` error, so its
facts cache can fall back to a stale answer. Never used inside a jail: nothing here runs package code.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import httpx

HEADERS = {"Accept": "application/json", "User-Agent": "cloche"}


class Unavailable(Exception):
    """The registry could not be asked (network, timeout, 5xx, a malformed answer) and nothing usable was
    cached; each ecosystem names its own."""


@dataclass(frozen=True)
class JsonDocument:
    url: str  # where it was read from, after redirects (relative links in it are relative to this)
    data: dict[str, Any]


class RegistryHttp:
    """JSON documents from one registry, host side."""

    def __init__(
        self,
        *,
        timeout: float,
        max_bytes: int,
        unavailable: type[Unavailable],
        missing: frozenset[int] = frozenset({404}),
    ) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.unavailable = unavailable  # raised with the URL and the cause
        self.missing = missing  # statuses that mean "no such name"
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(timeout=self.timeout, follow_redirects=True, headers=HEADERS)
            return self._client

    def document(self, url: str) -> JsonDocument | None:
        """The JSON object at ``url``; None when the registry answers that it has no such name."""
        try:
            response = self.client().get(url)
        except httpx.HTTPError as e:
            raise self.unavailable(f"{url}: {e.__class__.__name__}: {e}") from e
        if response.status_code in self.missing:
            return None
        if response.status_code != 200 or len(response.content) > self.max_bytes:
            raise self.unavailable(f"{url}: HTTP {response.status_code}")
        try:
            data = response.json()
        except ValueError as e:
            raise self.unavailable(f"{url}: not JSON") from e
        if not isinstance(data, dict):
            raise self.unavailable(f"{url}: not a JSON object")
        return JsonDocument(str(response.url), data)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
