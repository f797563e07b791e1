"""Runs inside the jail: start an IPython kernel (ipykernel) on the connection file cloche wrote.

Argument: the connection file (transport ``ipc``: the kernel binds unix sockets in the folder it names, which
the server reaches through the same folder on the host). Argument 2: the kernel tools folder (ipykernel and its
dependencies, cloche's read-only tool environment), put *last* on ``sys.path`` so the sandbox's own packages
win wherever both have one. Argument 3 (optional): the bytecode prefix of the sandbox's environment, set once
the kernel machinery is imported (it ships its bytecode beside its sources; the sandbox's environment keeps
its own in the prefix tree, and Python reads only one of the two ways at a time).

One departure from a stock kernel: ipykernel relays what forked children print over a zmq socket bound on
``tcp://127.0.0.1``, and zmq resolves a TCP bind address through the list of network interfaces, which the
jail's system-call filter refuses (no netlink sockets); that relay is bound to a unix socket in /tmp instead.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def main(argv: list[str]) -> None:
    connection_file, tools = argv[1], argv[2]
    pycache_prefix = argv[3] if len(argv) > 3 else None
    del sys.path[0]  # this script's folder: nothing in it is meant to be imported
    sys.path.append(tools)

    import zmq  # type: ignore[import-not-found,unused-ignore]
    from ipykernel import iostream, kernelapp  # type: ignore[import-not-found]

    class UnixPipeIOPubThread(iostream.IOPubThread):  # type: ignore[misc]
        """The forked-children relay on a unix socket (see the module docstring)."""

        def _setup_pipe_in(self) -> None:
            self._pipe_uuid = os.urandom(16)
            self._pipe_endpoint = f"ipc:///tmp/.cloche-iopub-{os.getpid()}-{os.urandom(4).hex()}"
            pipe_in = self.socket.context.socket(zmq.PULL)
            pipe_in.linger = 0
            pipe_in.bind(self._pipe_endpoint)
            self._pipe_in = iostream.ZMQStream(pipe_in, self.io_loop)
            self._pipe_in.on_recv(self._handle_pipe_msg)

        def _setup_pipe_out(self) -> tuple[Any, Any]:
            context = zmq.Context()
            pipe_out = context.socket(zmq.PUSH)
            pipe_out.linger = 3000
            pipe_out.connect(self._pipe_endpoint)
            return context, pipe_out

    kernelapp.IOPubThread = UnixPipeIOPubThread
    app = kernelapp.IPKernelApp.instance()
    app.initialize(["-f", connection_file])
    if pycache_prefix:
        sys.pycache_prefix = pycache_prefix  # from here on, imports read the environment's precompiled tree
    app.start()


if __name__ == "__main__":
    main(sys.argv)
