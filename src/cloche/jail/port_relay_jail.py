"""In-jail half of the ports proxy: each TCP port the program listens on becomes a unix socket the server can open.

Runs under the jail's own ``/usr/bin/python3`` (stdlib only, Python 3.8+; keep it that way)::

    python3 -I port_relay_jail.py --dir /run/resident [--skip 3128] -- COMMAND [ARGS...]

Starts COMMAND with its own stdio, then about four times a second reads which TCP ports listen on loopback or on
every address in the jail's own network namespace (``/proc/net/tcp``, ``/proc/net/tcp6``), and keeps one socket
``port-<N>.sock`` in DIR per such port; a connection to it is relayed to that port on the jail's loopback. The jail
has no other network, so the relay can reach nothing but the sandbox's own program: the direction is the egress
launcher's, reversed. Exits with COMMAND's status (the jail ends with it) and forwards SIGTERM, SIGINT and SIGHUP.
"""

import argparse
import asyncio
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cloche.jail.egress_launcher_jail import splice, start_command
else:  # in the jail: the egress launcher is staged beside this file; both relays share its splice and start
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from egress_launcher_jail import splice, start_command

POLL_SECONDS = 0.25
LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's st column
# Local addresses (as /proc/net prints them) the relay connects to through loopback, and how.
IPV4_REACHABLE = ("00000000", "0100007F")  # 0.0.0.0, 127.0.0.1
IPV6_REACHABLE = ("0" * 32, "0" * 24 + "01000000")  # ::, ::1


def listening_ports(skip: "set[int]") -> "dict[int, str]":
    """Port -> the loopback address to reach it at, for every listening socket the relay may reach."""
    found: dict[int, str] = {}
    for table, reachable, address in (("tcp6", IPV6_REACHABLE, "::1"), ("tcp", IPV4_REACHABLE, "127.0.0.1")):
        try:
            with open("/proc/net/" + table) as lines:
                rows = lines.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            host, _, port_hex = fields[1].partition(":")
            port = int(port_hex, 16)
            if fields[3] == LISTEN and host in reachable and port not in skip:
                found[port] = address  # IPv4 last: a dual-stack :: socket also answers on 127.0.0.1
    return found


async def relay_to(address: str, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        up_reader, up_writer = await asyncio.open_connection(address, port)
    except OSError:
        writer.close()
        return
    await splice(reader, writer, up_reader, up_writer)


class Ports:
    """The unix sockets of the ports listening now; follows them as they open and close."""

    def __init__(self, directory: str, skip: "set[int]") -> None:
        self.directory = directory
        self.skip = skip
        self.servers: dict[int, asyncio.AbstractServer] = {}

    def path(self, port: int) -> str:
        return os.path.join(self.directory, f"port-{port}.sock")

    async def follow(self) -> None:
        while True:
            listening = listening_ports(self.skip)
            for port in sorted(set(self.servers) - set(listening)):
                self.close(port)
            for port, address in listening.items():
                if port not in self.servers:
                    await self.open(port, address)
            await asyncio.sleep(POLL_SECONDS)

    async def open(self, port: int, address: str) -> None:
        def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> "asyncio.Future[None]":
            return asyncio.ensure_future(relay_to(address, port, reader, writer))

        path = self.path(port)
        partial = path + ".new"  # made under another name, renamed: the server never sees a socket not listening
        if os.path.exists(partial):
            os.unlink(partial)
        self.servers[port] = await asyncio.start_unix_server(handle, partial)
        os.rename(partial, path)

    def close(self, port: int) -> None:
        self.servers.pop(port).close()
        if os.path.exists(self.path(port)):
            os.unlink(self.path(port))

    def close_all(self) -> None:
        for port in list(self.servers):
            self.close(port)


async def run(directory: str, skip: "set[int]", command: "list[str]") -> int:
    child = await start_command(command)
    if isinstance(child, int):
        return child
    ports = Ports(directory, skip)
    following = asyncio.ensure_future(ports.follow())
    code = await child.wait()
    following.cancel()
    ports.close_all()
    return 128 - code if code < 0 else code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dir", required=True, help="folder to keep the port-<N>.sock sockets in")
    parser.add_argument("--skip", type=int, action="append", default=[], help="a port never exposed")
    argv = sys.argv[1:]
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        parser.error("give the command after '--'")
    split = argv.index("--")
    args = parser.parse_args(argv[:split])
    return asyncio.run(run(args.dir, set(args.skip), argv[split + 1 :]))


if __name__ == "__main__":
    sys.exit(main())
