"""In-jail TCP -> unix socket relay, so ``HTTPS_PROXY=http://127.0.0.1:<port>`` reaches the host proxy.

Runs under the jail's own ``/usr/bin/python3`` (stdlib only, Python 3.8+; keep it that way)::

    python3 egress_launcher_jail.py --listen 127.0.0.1:3128 --socket /run/cloche/egress.sock

Prints ``ready`` once listening. Exits on SIGTERM/SIGINT or when stdin reaches EOF, so it dies
with the process that holds the other end of its stdin: give it a pipe (``sh -c 'fw &'`` hands a
background job /dev/null, and it exits at once). It enforces nothing: the host proxy does.

With ``--exec -- CMD ARGS...`` it listens, runs CMD with its own stdio, forwards signals to it, and exits
with CMD's status: the jail's runner uses this form, so the relay lives exactly as long as the program.
"""

import argparse
import asyncio
import os
import signal
import sys
import threading

CHUNK = 64 * 1024


async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    while True:
        data = await src.read(CHUNK)
        if not data:
            break
        dst.write(data)
        await dst.drain()
    if dst.can_write_eof():
        dst.write_eof()  # pass the half-close on; the peer may still answer


async def relay(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter, socket_path: str) -> None:
    try:
        up_r, up_w = await asyncio.open_unix_connection(socket_path)
    except OSError:
        client_w.close()
        return
    await splice(client_r, client_w, up_r, up_w)


async def splice(
    client_r: asyncio.StreamReader,
    client_w: asyncio.StreamWriter,
    up_r: asyncio.StreamReader,
    up_w: asyncio.StreamWriter,
) -> None:
    """Copy both ways until both are done; the ports relay (port_relay_jail.py) uses it too."""
    tasks = [asyncio.ensure_future(pipe(client_r, up_w)), asyncio.ensure_future(pipe(up_r, client_w))]
    try:
        # An error in one direction (reset) ends both, or the other could wait forever.
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        client_w.close()
        up_w.close()


def watch_stdin(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    # A thread, not loop.add_reader: stdin may be a file or /dev/null, which epoll refuses.
    try:
        while os.read(0, 4096):
            pass
    except OSError:
        pass
    loop.call_soon_threadsafe(stop.set)


async def serve(host: str, port: int, socket_path: str) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    threading.Thread(target=watch_stdin, args=(loop, stop), daemon=True).start()
    server = await asyncio.start_server(lambda r, w: relay(r, w, socket_path), host, port)
    print("ready", flush=True)
    await stop.wait()
    server.close()  # no wait_closed(): on 3.12+ it would wait for every open tunnel


async def serve_then_exec(host: str, port: int, socket_path: str, command: "list[str]") -> int:
    """Listen first, then run ``command`` with our stdio; its exit ends the relay (and the jail)."""
    server = await asyncio.start_server(lambda r, w: relay(r, w, socket_path), host, port)
    child = await start_command(command)
    if isinstance(child, int):
        return child
    code = await child.wait()
    server.close()
    return 128 - code if code < 0 else code


async def start_command(command: "list[str]") -> "asyncio.subprocess.Process | int":
    """Start ``command`` with our stdio and pass SIGTERM, SIGINT and SIGHUP on to it; the exit status a shell
    gives (127 or 126) when it cannot start. The ports relay (port_relay_jail.py) uses it too."""
    try:
        child = await asyncio.create_subprocess_exec(*command)
    except OSError as exc:
        print(f"{command[0]}: {exc.strerror}", file=sys.stderr)
        return 127 if isinstance(exc, FileNotFoundError) else 126
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, child.send_signal, sig)
    return child


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--listen", default="127.0.0.1:3128", help="host:port to listen on")
    parser.add_argument("--socket", required=True, help="unix socket of the host egress proxy")
    parser.add_argument("--exec", action="store_true", help="run the command after '--', then exit")
    argv = sys.argv[1:]
    # Everything after '--' belongs to the command; argparse would try to read its options.
    command = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    host, _, port = args.listen.rpartition(":")
    if args.exec:
        if not command:
            parser.error("--exec needs a command after '--'")
        return asyncio.run(serve_then_exec(host or "127.0.0.1", int(port), args.socket, command))
    try:
        asyncio.run(serve(host or "127.0.0.1", int(port), args.socket))
    except OSError as exc:
        print(f"egress-launcher: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
