"""Build and run a Go entry *inside the exec jail*, as the sandbox's uid: ``python3 -I run.py ENTRY ARGS...``.

The package holding ENTRY is built with ``go build`` into ``/sandbox/.cloche/go/bin/`` and then exec'd.
go.mod and go.sum come from the environment through ``-overlay``, so a workspace without them needs
none written into it. ``GOCACHEPROG`` (set by the ecosystem) layers the sandbox's own build cache over
the environment's precompiled packages: a first build compiles only the sandbox's packages, and a
second build of unchanged code compiles and links nothing (go sees the binary is up to date).

Compiler errors are the program's errors: they go to stderr and the exit code is go's.
Standard library only: the host's /usr/bin/python3 runs this file.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

WORKSPACE = "/sandbox"
ENV = "/opt/cloche/env/go"  # the ecosystem's ENV_MOUNT
OUT = f"{WORKSPACE}/.cloche/go"


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: run.py ENTRY [ARGS...]", file=sys.stderr)
        return 2
    entry, args = argv[0], argv[1:]
    module_root = os.path.normpath(os.path.join(WORKSPACE, os.environ.get("CLOCHE_GO_MODULE_ROOT", "")))
    package = os.path.dirname(os.path.normpath(os.path.join(WORKSPACE, entry)))
    target = "./" + os.path.relpath(package, module_root)
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.relpath(package, WORKSPACE)).strip("._") or "main"
    binary = f"{OUT}/bin/{name}"
    os.makedirs(f"{OUT}/bin", exist_ok=True)
    overlay = {"Replace": {f"{module_root}/{f}": f"{ENV}/{f}" for f in ("go.mod", "go.sum")}}
    overlay_file = "/tmp/cloche-go-overlay.json"
    with open(overlay_file, "w", encoding="utf-8") as handle:
        json.dump(overlay, handle)
    built = subprocess.run(["go", "build", "-overlay", overlay_file, "-o", binary, target], cwd=module_root)
    if built.returncode != 0:
        return built.returncode
    sys.stdout.flush()
    os.execv(binary, [os.path.join(WORKSPACE, entry), *args])
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
