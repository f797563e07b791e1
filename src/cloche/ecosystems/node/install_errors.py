"""npm's failures told as what happened: an install script that needed the outside world.

Install jails reach only the package registries. A package whose install script downloads a browser or
a prebuilt binary from elsewhere (browser automation, some native addons) therefore fails there, and npm
reports it as a stack trace. When a failed ``npm ci`` tried another host, the error names the package whose
script failed, what it tried to fetch, the package's own advice (its first error line), and what to use
instead. Two signs show such a host: the egress proxy refused it, or a script that ignores the proxy
variables could not even resolve its name (install jails have no DNS of their own: ``getaddrinfo EAI_AGAIN
github.com``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

_SCRIPT_PATH = re.compile(r"^npm error path \S*/node_modules/((?:@[^/\s]+/)?[^/\s]+)\s*$", re.MULTILINE)
_SCRIPT_COMMAND = re.compile(r"^npm error command sh -c (.+)$", re.MULTILINE)
_URL = re.compile(r"https?://[^\s'\"<>)\]]+")
_NPM_PREFIX = re.compile(r"^npm error ?")
# Node's own wording when a direct connection's name lookup fails (no resolver in the jail).
_UNRESOLVED_HOST = re.compile(r"getaddrinfo (?:EAI_AGAIN|ENOTFOUND) ([A-Za-z0-9.-]+\.[A-Za-z]{2,})")


_NOISE = ("code ", "path ", "command ", "at ", "A complete log", "gyp info", "gyp http", "(node:", "prebuild-install")


def _first_error_line(output: str) -> str | None:
    """The script's own message: the first line after npm's header that says "error" and is not a stack
    frame, npm's header, a warning or a progress line; else the first line that is none of those."""
    lines = [_NPM_PREFIX.sub("", line).strip() for line in output.splitlines() if line.startswith("npm error")]
    lines = [line for line in lines if line and not line.startswith(_NOISE) and line not in ("}", "command failed")]
    erring = [line for line in lines if "err" in line.lower()]
    chosen = erring or lines
    return chosen[0][:300] if chosen else None


def _fetched(output: str, denied: Sequence[str]) -> list[str]:
    """URLs in the output on a refused host (what the script tried to fetch), else the refused hosts."""
    hosts = {h.rsplit(":", 1)[0].lower() for h in denied}
    urls = [u.rstrip(".,;") for u in _URL.findall(output)]
    found = list(dict.fromkeys(u for u in urls if (urlsplit(u).hostname or "").lower() in hosts))
    return found or list(dict.fromkeys(denied))


def outside_world(output: str, denied: Sequence[str], popular: Callable[[], frozenset[str]]) -> str | None:
    """A clear message when a failed install's script needed a host install jails cannot reach; None when
    the failure is something else (npm's own error is then the best report)."""
    command = m.group(1).strip() if (m := _SCRIPT_COMMAND.search(output)) else None
    if not denied and command is not None:  # only a script's lookups: npm's own go through the proxy
        denied = list(dict.fromkeys(_UNRESOLVED_HOST.findall(output)))
    if not denied:
        return None
    package = m.group(1) if (m := _SCRIPT_PATH.search(output)) else None
    who = f"{package}'s install script" if package else "an install script"
    if command:
        who += f" ({command})"
    fetched = ", ".join(_fetched(output, denied)[:3])
    parts = [
        f"{who} tried to download from outside the package registries: {fetched}. Install jails reach only "
        "the registries, so a package that fetches a browser or a prebuilt binary while installing cannot be "
        "installed here."
    ]
    own = _first_error_line(output)
    if own:
        parts.append(f"The script said: {own}")
    core = f"{package}-core" if package else None
    if core and core in popular():
        parts.append(f"Use {core!r} instead: the same library without the download (it then needs a binary to run).")
    else:
        parts.append(
            "Use a variant of the package that downloads nothing when installed, or one whose binary ships "
            "inside the registry package."
        )
    return " ".join(parts)
