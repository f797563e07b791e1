"""Namespaces and identity: every run gets new user, pid, mount, ipc, uts, cgroup and net namespaces.

bwrap is started as the sandbox's own host uid (never root), so the unprivileged uid the code sees
inside maps to a host uid that owns nothing but that sandbox's workspace. ``--disable-userns`` stops
nested user namespaces; ``--new-session`` defeats TIOCSTI injection into a controlling terminal.
"""

from __future__ import annotations

from cloche.jail.bwrap import BwrapCommand
from cloche.jail.profile import JailProfile


def apply(cmd: BwrapCommand, profile: JailProfile, jail_uid: int) -> None:
    cmd.args += ["--unshare-all", "--unshare-user", "--disable-userns"]
    cmd.args += ["--uid", str(jail_uid), "--gid", str(jail_uid)]
    cmd.args += ["--hostname", profile.hostname]
    # bwrap's init is pid 1 in the jail: when the command exits, the namespace dies with every
    # daemon it left behind. (The server adopts and reaps that init; see supervisor.py.)
    cmd.args += ["--cap-drop", "ALL", "--die-with-parent", "--new-session"]
    cmd.host_uid = profile.host_uid
