"""The host's side of the ports relay: where the in-jail relay (``port_relay_jail.py``) is staged, how a command
is wrapped in it, and where each listening port's socket appears.

The relay script (with the egress launcher, whose splice it shares) is copied under the data dir's ``jail/`` at
start-up (sandbox uids can read it there, wherever the package is installed), bound read-only into the jail, and
started by ``/usr/bin/python3 -I``.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

from cloche.jail.profile import RESIDENT_DIR, Mount

SOURCES = (Path(__file__).with_name("port_relay_jail.py"), Path(__file__).with_name("egress_launcher_jail.py"))
RELAY_DIR = "/opt/cloche/relay"
RELAY_IN_JAIL = f"{RELAY_DIR}/port_relay_jail.py"


def stage(bin_dir: Path) -> Path:
    """Copy the relay (and the egress launcher it imports) once per source version to a folder every sandbox uid
    can read; the folder."""
    digest = hashlib.sha256(b"".join(source.read_bytes() for source in SOURCES)).hexdigest()[:12]
    target = bin_dir / f"cloche-port-relay-{digest}"
    if not target.exists():
        bin_dir.mkdir(parents=True, exist_ok=True)
        bin_dir.chmod(0o755)
        partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=bin_dir))
        for source in SOURCES:
            shutil.copyfile(source, partial / source.name)
            (partial / source.name).chmod(0o644)
        partial.chmod(0o755)
        partial.rename(target)
    return target


def mount(staged: Path) -> Mount:
    return Mount("ro-bind", RELAY_DIR, source=staged)


def wrap(argv: tuple[str, ...], skip: tuple[int, ...] = ()) -> tuple[str, ...]:
    """``argv`` started by the relay, which exposes its ports in the resident's socket folder."""
    never = [option for port in skip for option in ("--skip", str(port))]
    return ("/usr/bin/python3", "-I", RELAY_IN_JAIL, "--dir", RESIDENT_DIR, *never, "--", *argv)


def socket_name(port: int) -> str:
    """The socket (in the resident's folder) that reaches ``port`` inside its jail."""
    return f"port-{port}.sock"


def ports_in(socket_dir: Path) -> list[int]:
    """The ports the relay currently exposes in ``socket_dir``."""
    found = []
    try:
        names = [p.name for p in socket_dir.iterdir()]
    except OSError:
        return []
    for name in names:
        number = name.removeprefix("port-").removesuffix(".sock")
        if name.startswith("port-") and name.endswith(".sock") and number.isdigit():
            found.append(int(number))
    return sorted(found)
