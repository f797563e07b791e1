"""A layered Go build cache, spoken over the ``GOCACHEPROG`` protocol (Go 1.24+). Runs *inside* jails.

Go's own cache is one writable folder. cloche needs layers: the environment's precompiled packages
(read-only, shared by every sandbox using that environment) under each sandbox's own writable cache, so
a program's first build compiles only its own packages, and no sandbox can plant an object another
sandbox's build would link.

    python3 -I cacheprog.py --upper DIR [--lower DIR ...] [--shared DIR]

``--upper`` receives every put. ``--lower`` folders are read, never written. ``--shared`` (install jails
only, for the standard library) is read and written: a hit is copied into the upper layer so the
environment being built is complete on its own, and puts are written to both.

Layout of a layer: ``a/<action id hex>`` holds ``<output id hex> <size>``; ``o/<output id hex>`` holds
the output. Files are written to a temporary name and renamed, so concurrent builds never see half.
Standard library only: this file is copied into jails and run by the host's /usr/bin/python3.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import tempfile
from typing import IO, Any


class Layer:
    def __init__(self, root: str) -> None:
        self.root = root

    def lookup(self, action: str) -> tuple[str, int, str] | None:
        """(output id hex, size, disk path) for an action, or None."""
        try:
            with open(os.path.join(self.root, "a", action), encoding="ascii") as handle:
                output, size = handle.read().split()
        except (OSError, ValueError):
            return None
        path = os.path.join(self.root, "o", output)
        return (output, int(size), path) if os.path.isfile(path) else None

    def _write(self, rel: str, data: bytes) -> str:
        path = os.path.join(self.root, rel)
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(temp, 0o644)
        os.replace(temp, path)
        return path

    def store(self, action: str, output: str, data: bytes) -> str:
        path = os.path.join(self.root, "o", output)
        if not (os.path.isfile(path) and os.path.getsize(path) == len(data)):
            path = self._write(f"o/{output}", data)
        self._write(f"a/{action}", f"{output} {len(data)}".encode("ascii"))
        return path

    def adopt(self, action: str, output: str, source: str) -> str:
        with open(source, "rb") as handle:
            return self.store(action, output, handle.read())


class LayeredCache:
    def __init__(self, upper: Layer, lower: list[Layer], shared: Layer | None) -> None:
        self.upper, self.lower, self.shared = upper, lower, shared

    def get(self, action: str) -> dict[str, Any]:
        found = self.upper.lookup(action)
        for layer in self.lower:
            found = found or layer.lookup(action)
        if found is None and self.shared is not None:
            hit = self.shared.lookup(action)
            if hit is not None:
                found = (hit[0], hit[1], self.upper.adopt(action, hit[0], hit[2]))
        if found is None:
            return {"Miss": True}
        output, size, path = found
        return {"OutputID": _b64(output), "Size": size, "DiskPath": path}

    def put(self, action: str, output: str, data: bytes) -> dict[str, Any]:
        path = self.upper.store(action, output, data)
        if self.shared is not None:
            self.shared.store(action, output, data)
        return {"DiskPath": path}


def _hex(value: str | None) -> str:
    return base64.b64decode(value or "").hex()


def _b64(hex_value: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_value)).decode("ascii")


def _body(requests: IO[str]) -> bytes:
    """A non-empty put body: the next non-blank line, one base64 JSON string (Go writes a blank line
    between the request and its body)."""
    line = requests.readline()
    while line and not line.strip():
        line = requests.readline()
    return base64.b64decode(json.loads(line))


def serve(cache: LayeredCache, requests: IO[str], responses: IO[str]) -> None:
    def answer(message: dict[str, Any]) -> None:
        responses.write(json.dumps(message) + "\n")
        responses.flush()

    answer({"ID": 0, "KnownCommands": ["get", "put", "close"]})
    for line in requests:
        if not line.strip():
            continue
        request = json.loads(line)
        ident, command = request.get("ID", 0), request.get("Command")
        try:
            if command == "get":
                answer({"ID": ident, **cache.get(_hex(request.get("ActionID")))})
            elif command == "put":
                body = _body(requests) if request.get("BodySize") else b""
                answer({"ID": ident, **cache.put(_hex(request.get("ActionID")), _hex(request.get("OutputID")), body)})
            elif command == "close":
                answer({"ID": ident})
                return
            else:
                answer({"ID": ident, "Err": f"unknown command {command!r}"})
        except OSError as e:
            answer({"ID": ident, "Err": f"cloche build cache: {e}"})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="layered GOCACHEPROG")
    parser.add_argument("--upper", required=True)
    parser.add_argument("--lower", action="append", default=[])
    parser.add_argument("--shared")
    args = parser.parse_args(argv)
    os.makedirs(args.upper, exist_ok=True)
    shared = Layer(args.shared) if args.shared else None
    cache = LayeredCache(Layer(args.upper), [Layer(d) for d in args.lower], shared)
    serve(cache, sys.stdin, sys.stdout)


if __name__ == "__main__":
    main()
