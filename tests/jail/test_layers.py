"""Each jail layer proven alone: a probe per layer that fails when that layer, and only it, is removed.

The jail is the runner's own (``Runner.confine``). Where another layer would hide a missing one (the seccomp
filter also refuses new user namespaces), the probe runs with that other layer switched off, so what it sees
is the layer under test and nothing else.
"""

from __future__ import annotations

import json

import pytest
from _bwrap import python, require_jail, run_jailed, workspace

pytestmark = pytest.mark.usefixtures("jail_ready")


@pytest.fixture(scope="module")
def jail_ready() -> None:
    require_jail()


def probe(code: str, *, seccomp: bool = True) -> dict[str, object]:
    """Run ``code`` (which prints one JSON object) in the jail and return that object."""
    head = "import ctypes, errno, json, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
    with workspace() as ws:
        done = run_jailed(python(head + code), ws, seccomp=seccomp)
    assert done.returncode == 0, done.stderr
    found: dict[str, object] = json.loads(done.stdout)
    return found


@pytest.mark.parametrize("seccomp", [True, False], ids=["filtered", "unfiltered"])
def test_root_is_read_only_by_the_remount(seccomp: bool) -> None:
    # EROFS only comes from the read-only remount of /; a permission layer would say EACCES or EPERM.
    found = probe(
        """
out = {}
for name, act in (("file", lambda: open("/written-by-jail", "w")), ("dir", lambda: os.mkdir("/made-by-jail"))):
    try:
        act()
        out[name] = "ok"
    except OSError as e:
        out[name] = errno.errorcode[e.errno]
print(json.dumps(out))
""",
        seccomp=seccomp,
    )
    assert found == {"file": "EROFS", "dir": "EROFS"}


def test_user_namespaces_are_refused_by_bwrap_without_seccomp() -> None:
    # --disable-userns caps the jail's user namespaces at the one it is in: unshare says ENOSPC. The seccomp
    # filter would refuse it too (EPERM), so it is switched off here to see the flag alone.
    code = """
rc = libc.unshare(0x10000000)  # CLONE_NEWUSER
print(json.dumps({"unshare": "ok" if rc == 0 else errno.errorcode[ctypes.get_errno()]}))
"""
    assert probe(code, seccomp=False) == {"unshare": "ENOSPC"}
    assert probe(code)["unshare"] != "ok"


@pytest.mark.parametrize("seccomp", [True, False], ids=["filtered", "unfiltered"])
def test_the_run_leads_its_own_session(seccomp: bool) -> None:
    # With --new-session the session is led inside the jail's pid namespace (bwrap's init), so no terminal of
    # the host side can be reached (TIOCSTI); without it the leader is outside and getsid says 0 from the jail.
    found = probe('print(json.dumps({"sid": os.getsid(0)}))', seccomp=seccomp)
    assert found["sid"] == 1


def test_etc_shadow_is_absent_not_just_unreadable() -> None:
    found = probe(
        """
print(json.dumps({"exists": os.path.lexists("/etc/shadow"), "listed": "shadow" in os.listdir("/etc"),
                  "gshadow": os.path.lexists("/etc/gshadow")}))
"""
    )
    assert found == {"exists": False, "listed": False, "gshadow": False}
