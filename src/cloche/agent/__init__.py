"""Node agents: what owns workspaces, environments and jails on a host, behind one protocol (``protocol.py``).

``local.py`` is the in-process agent (the single-node default), ``remote.py`` the client of an agent on another
host or process, ``server.py`` that agent's HTTP side, ``placement.py`` which agent holds which sandbox.
"""
