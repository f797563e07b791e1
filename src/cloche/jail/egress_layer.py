"""The jail's network layer, composed on the host: no network at all, or registry-only egress.

The jail always has its own network namespace (loopback only; see namespaces.py). When a profile allows
egress, three pieces work together:

* ``egress_policy.py``: which ``host:port`` may be reached and which addresses never are (pure).
* ``egress_proxy_host.py``: the CONNECT proxy, running on the host, on a unix socket only this run's uid
  can open; its directory is bound at ``/run/cloche``.
* ``egress_launcher_jail.c`` (or ``egress_launcher_jail.py`` where no compiler exists): runs inside the
  jail, listens on 127.0.0.1:3128, relays to that socket, and starts the command.

This module starts a run's proxy and says what its jail must place (``open_session``); ``apply`` wires that
into one bwrap invocation, and the gVisor tier places the same in its OCI bundle. ``HTTPS_PROXY`` and
friends point every installer and runtime at the launcher.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cloche.jail.bwrap import BwrapCommand
from cloche.jail.c_programs import compile_once
from cloche.jail.egress_proxy_host import EgressProxy
from cloche.jail.egress_upstream_host import UpstreamProxy
from cloche.jail.profile import JailProfile, Mount
from cloche.store import safefs

LAUNCHER_SCRIPT = "/opt/cloche/egress-launcher.py"
LAUNCHER_BINARY = "/opt/cloche/egress-launcher"
LAUNCHER_C_SOURCE = Path(__file__).with_name("egress_launcher_jail.c")
LAUNCHER_PY_SOURCE = Path(__file__).with_name("egress_launcher_jail.py")
SOCKET_DIR = "/run/cloche"
SOCKET_NAME = "egress.sock"
PROXY_PORT = 3128
log = logging.getLogger("cloche.egress")


@dataclass(frozen=True)
class EgressHost:
    """What the host provides for egress: where per-run sockets go, trusted networks, the built launcher."""

    run_dir: Path
    trusted_networks: Sequence[str] = ()
    launcher: Path | None = None  # the compiled C launcher; None: the Python one
    upstream: UpstreamProxy | None = None  # the operator's forward proxy every allowed tunnel leaves through


@dataclass
class EgressSession:
    proxy: EgressProxy
    directory: Path

    def denied_hosts(self) -> list[str]:
        return self.proxy.denied_hosts()


def build_launcher(bin_dir: Path) -> Path | None:
    """Compile the in-jail C launcher once per source version; None (use the Python one) when no compiler works."""
    return compile_once(LAUNCHER_C_SOURCE, bin_dir, "cloche-egress-launcher")


@dataclass(frozen=True)
class EgressPlumbing:
    """What a run with egress holds and what its jail must place: the proxy session, the read-only binds (the
    socket's folder, the launcher), the proxy variables and the launcher argv that starts the command."""

    session: EgressSession
    mounts: tuple[Mount, ...]
    env: Mapping[str, str]
    launcher: tuple[str, ...]


async def open_session(
    profile: JailProfile, host: EgressHost, release: contextlib.AsyncExitStack, *, socket_mode: int = 0o600
) -> EgressPlumbing | None:
    """Start the run's proxy (stopped on release), or None: the net namespace stays empty. ``socket_mode`` is
    0600 (only the run's host uid may connect) unless the tier connects from another host uid."""
    policy = profile.egress
    if policy is None or not (policy.allow or policy.report_refusals):
        return None
    directory = host.run_dir / f"egress-{secrets.token_hex(8)}"
    directory.mkdir(mode=0o711)
    release.callback(safefs.remove_tree, directory)
    proxy = EgressProxy(trusted_networks=host.trusted_networks, upstream=host.upstream)
    await proxy.start(directory / SOCKET_NAME, policy, uid=profile.host_uid, mode=socket_mode)
    session = EgressSession(proxy, directory)
    release.push_async_callback(proxy.stop)
    socket = f"{SOCKET_DIR}/{SOCKET_NAME}"
    if host.launcher is not None:
        launcher: tuple[str, ...] = (LAUNCHER_BINARY, str(PROXY_PORT), socket, "--")
        binds = (Mount("ro-bind", SOCKET_DIR, directory), Mount("ro-bind", LAUNCHER_BINARY, host.launcher))
    else:
        listen = f"127.0.0.1:{PROXY_PORT}"
        launcher = ("/usr/bin/python3", "-I", LAUNCHER_SCRIPT, "--listen", listen, "--socket", socket, "--exec", "--")
        binds = (Mount("ro-bind", SOCKET_DIR, directory), Mount("ro-bind", LAUNCHER_SCRIPT, LAUNCHER_PY_SOURCE))
    return EgressPlumbing(session, binds, proxy_env(PROXY_PORT), launcher)


async def apply(
    cmd: BwrapCommand, profile: JailProfile, host: EgressHost, release: contextlib.AsyncExitStack
) -> EgressSession | None:
    """Contribute the egress plumbing to a bwrap invocation, or nothing; the proxy stops on release."""
    plumbing = await open_session(profile, host, release)
    if plumbing is None:
        return None
    for bind in plumbing.mounts:
        cmd.args += ["--ro-bind", str(bind.source), bind.dest]
    cmd.env.update(plumbing.env)
    cmd.launcher = list(plumbing.launcher)
    return plumbing.session


def proxy_env(port: int) -> dict[str, str]:
    """Environment that points pip, uv, npm, curl, Java, ... at the in-jail launcher.

    Plain-HTTP variables are set too, so a plain request gets the proxy's clear 405 instead of a
    connection error. GOPROXY is a module-mirror setting, not a network proxy, so it is left alone.
    Callers that already have JAVA_TOOL_OPTIONS should append theirs.
    """
    url = f"http://127.0.0.1:{port}"
    no_proxy = "localhost,127.0.0.1,::1"
    java = " ".join(
        f"-D{scheme}.proxy{key}={value}"
        for scheme in ("https", "http")
        for key, value in (("Host", "127.0.0.1"), ("Port", str(port)))
    )
    env = {name: url for base in ("https_proxy", "http_proxy", "all_proxy") for name in (base, base.upper())}
    env |= {"PIP_PROXY": url, "npm_config_proxy": url, "npm_config_https_proxy": url}
    env |= {"NO_PROXY": no_proxy, "no_proxy": no_proxy}
    env["JAVA_TOOL_OPTIONS"] = java + " -Dhttp.nonProxyHosts=localhost|127.0.0.1"
    return env
