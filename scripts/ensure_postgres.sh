#!/usr/bin/env bash
# The tests start a throwaway PostgreSQL cluster (initdb, pg_ctl); make sure its server binaries are here.
# Debian/Ubuntu: installs postgresql-15 (or the distribution's default postgresql) when none is found.
set -euo pipefail

found() { compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; }

if found; then
    exit 0
fi
echo "cloche: PostgreSQL server binaries not found; installing them for the test suite" >&2
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "cloche: cannot install PostgreSQL here (needs root and apt-get); install postgresql-15 by hand" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq postgresql-15 >/dev/null || apt-get install -y -qq postgresql >/dev/null || {
    echo "cloche: apt-get could not install postgresql-15 or postgresql; install it by hand" >&2
    exit 1
}
if ! found; then
    echo "cloche: PostgreSQL was installed but no initdb is under /usr/lib/postgresql/*/bin" >&2
    exit 1
fi
