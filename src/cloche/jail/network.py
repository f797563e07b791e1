"""Network layer: no network at all, or registry-only egress through the host proxy.

The jail always has its own network namespace (loopback only). When a profile allows egress, the host
starts an ``EgressProxy`` on a unix socket that only this run's uid can open, binds its directory at
``/run/cloche``, and the command is started by the in-jail forwarder, which listens on 127.0.0.1:3128 and
relays to that socket. ``HTTPS_PROXY`` and friends point every installer and runtime at it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import secrets
import shutil
import socket
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cloche.jail.bwrap import BwrapCommand
from cloche.jail.egress import EgressProxy, forwarder_source_path, proxy_env
from cloche.jail.profile import JailProfile
from cloche.store import safefs

FORWARDER = "/opt/cloche/forwarder.py"
FORWARDER_BINARY = "/opt/cloche/forwarder"
FORWARDER_SOURCE = Path(__file__).with_name("forwarder.c")
SOCKET_DIR = "/run/cloche"
SOCKET_NAME = "egress.sock"
PROXY_PORT = 3128
log = logging.getLogger("cloche.egress")


@dataclass
class EgressSession:
    proxy: EgressProxy
    directory: Path

    def denied_hosts(self) -> list[str]:
        return self.proxy.denied_hosts()

    async def close(self) -> None:
        await self.proxy.stop()
        safefs.remove_tree(self.directory)


def registry_addresses(hosts: Sequence[str]) -> list[str]:
    """Addresses the registry names resolve to on this host, minus anything never worth trusting.

    Some networks answer registry names with a non-global address (a TLS-intercepting gateway); the
    operator's resolver is trusted for the registries' own names. Loopback, link-local (the cloud metadata
    endpoint), unspecified and multicast addresses are never trusted.
    """
    found: set[str] = set()
    for entry in hosts:
        host = entry.rsplit(":", 1)[0] if entry.count(":") == 1 else entry
        if host.startswith("*."):
            continue
        try:
            infos = socket.getaddrinfo(host, 443, type=socket.SOCK_STREAM)
        except OSError:
            continue
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]))
            never = address.is_loopback or address.is_link_local or address.is_unspecified or address.is_multicast
            if not never and not address.is_global:
                found.add(str(address))
    return sorted(found)


def build_forwarder(bin_dir: Path) -> Path | None:
    """Compile the C launcher once per source version; None (use forwarder.py) when no compiler works."""
    digest = hashlib.sha256(FORWARDER_SOURCE.read_bytes()).hexdigest()[:12]
    target = bin_dir / f"cloche-forwarder-{digest}"
    if target.exists():
        return target
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        log.warning("no C compiler: egress uses the slower Python forwarder")
        return None
    bin_dir.mkdir(parents=True, exist_ok=True)
    bin_dir.chmod(0o755)
    partial = bin_dir / f".{target.name}.tmp"
    built = subprocess.run(
        [compiler, "-O2", "-o", str(partial), str(FORWARDER_SOURCE)], capture_output=True, text=True, check=False
    )
    if built.returncode != 0:
        log.warning("could not compile the egress forwarder; using forwarder.py", extra={"stderr": built.stderr})
        return None
    partial.chmod(0o755)
    partial.rename(target)
    return target


async def apply(
    cmd: BwrapCommand, profile: JailProfile, run_dir: Path, trusted: Sequence[str], binary: Path | None
) -> EgressSession | None:
    """Contribute the egress plumbing, or nothing (the net namespace stays empty)."""
    policy = profile.egress
    if policy is None or not policy.allow:
        return None
    directory = run_dir / f"egress-{secrets.token_hex(8)}"
    directory.mkdir(mode=0o711)
    proxy = EgressProxy(trusted_networks=trusted)
    await proxy.start(directory / SOCKET_NAME, policy, uid=profile.host_uid)
    cmd.args += ["--ro-bind", str(directory), SOCKET_DIR]
    cmd.env.update(proxy_env(PROXY_PORT))
    if binary is not None:
        cmd.args += ["--ro-bind", str(binary), FORWARDER_BINARY]
        cmd.launcher = [FORWARDER_BINARY, str(PROXY_PORT), f"{SOCKET_DIR}/{SOCKET_NAME}", "--"]
        return EgressSession(proxy, directory)
    cmd.args += ["--ro-bind", str(forwarder_source_path()), FORWARDER]
    cmd.launcher = [
        "/usr/bin/python3",
        "-I",
        FORWARDER,
        "--listen",
        f"127.0.0.1:{PROXY_PORT}",
        "--socket",
        f"{SOCKET_DIR}/{SOCKET_NAME}",
        "--exec",
        "--",
    ]
    return EgressSession(proxy, directory)
