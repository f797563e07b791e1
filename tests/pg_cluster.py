"""A throwaway PostgreSQL cluster for the tests: initdb in a temp dir, its own port, a unix socket only.

PostgreSQL refuses to run as root, so the cluster runs as the ``postgres`` user (the Debian package makes it),
or as a system user made for the purpose. ``make test`` installs the binaries when they are missing
(``scripts/ensure_postgres.sh``); without them this fails loudly instead of skipping.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

PG_ROOT = Path("/usr/lib/postgresql")
FALLBACK_USER = "cloche-pgtest"
SUPERUSER = "cloche"  # the cluster's superuser role; trust authentication over the private socket


def bin_dir() -> Path:
    """The newest installed server's bin dir (15 on this kind of machine)."""
    found = sorted(
        PG_ROOT.glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0
    )
    if not found:
        raise RuntimeError(
            f"no PostgreSQL server binaries under {PG_ROOT}/*/bin: run `make test` (it installs postgresql-15) "
            "or `apt-get install postgresql-15`"
        )
    return found[-1].parent


def cluster_user() -> str:
    for name in ("postgres", FALLBACK_USER):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", FALLBACK_USER], check=True
    )
    return FALLBACK_USER


class PostgresCluster:
    def __init__(self, port: int) -> None:
        self.bin = bin_dir()
        self.user = cluster_user()
        self.port = port
        self.root = Path(tempfile.mkdtemp(prefix="cloche-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.log = self.root / "postgres.log"

    def _as_user(self, *argv: str) -> subprocess.CompletedProcess[str]:
        cmd = ["runuser", "-u", self.user, "--", *argv]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=self.root)
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}{done.stderr}{log}")
        return done

    def start(self) -> PostgresCluster:
        entry = pwd.getpwnam(self.user)
        self.socket_dir.mkdir()
        for path in (self.root, self.socket_dir):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        self.root.chmod(0o700)
        self._as_user(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-sync"
        )
        options = f"-p {self.port} -k {self.socket_dir} -c listen_addresses='' -c fsync=off -c max_connections=200"
        self._as_user(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@/{database}?host={self.socket_dir}&port={self.port}"

    def new_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        import psycopg

        name = "t_" + secrets.token_hex(6)
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                [
                    "runuser",
                    "-u",
                    self.user,
                    "--",
                    str(self.bin / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
                capture_output=True,
            )
        shutil.rmtree(self.root, ignore_errors=True)
