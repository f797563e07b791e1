"""Python code contexts, the ecosystem's side: the kernel tools, how a kernel starts, what a cell imports.

- **Kernel tools**: ipykernel and its dependencies, installed once per server into a store entry of their own
  (``uv pip install --target`` with bytecode compiled beside the sources, so the folder works wherever it is
  mounted) and bound read-only at ``TOOLS_MOUNT`` in every kernel's jail, beside the sandbox's own environment.
- **Launch**: the sandbox's interpreter (its venv's, else the system's) runs ``kernel_jail.py``, which puts the
  tools last on ``sys.path`` and starts ipykernel on cloche's connection file.
- **Cells' imports**: each cell's imports, normalised to plain import lines, are what the context's dependency
  source (a file under ``.cloche/contexts/``) accumulates, so the file pipeline resolves them as it would a
  script's.
- **Packages added while a kernel runs**: the new environment's site-packages, linked under ``ADDED_MOUNT``, goes
  first on the running kernel's ``sys.path`` (see ``added_path_code``).
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from cloche.ecosystems.base import ExecEnv
from cloche.ecosystems.common import reachable
from cloche.ecosystems.python.ecosystem import ENV_MOUNT, TARGET_PYTHON
from cloche.ecosystems.python.import_statements import RawImport, collect_imports, fallback_imports
from cloche.jail.profile import Mount

# ipykernel 6.29+ speaks message-mode interrupts and captures output written to file descriptors 1 and 2.
REQUIREMENTS = ("ipykernel>=6.29,<8",)
TOOLS_ECOSYSTEM = "python-kernel-tools"  # the store key's namespace: never mistaken for a sandbox environment
TOOLS_MOUNT = "/opt/cloche/kernel/tools"
LAUNCHER_MOUNT = "/opt/cloche/kernel/launcher/kernel_jail.py"  # alone in its folder
# The context's own folder (read-only): the connection file and, under added/, environments linked in while the
# kernel runs (one folder each). The kernel's sockets go to the resident's socket folder.
CONTEXT_MOUNT = "/opt/cloche/kernel/context"
CONNECTION_FILE = f"{CONTEXT_MOUNT}/kernel.json"
ADDED_MOUNT = f"{CONTEXT_MOUNT}/added"
LAUNCHER = Path(__file__).with_name("kernel_jail.py")
_MAGIC = re.compile(r"^\s*[%!]")


def launcher(stage: Path) -> Mount:
    """The launcher script where the kernel's jail finds it (staged when the checkout is not traversable)."""
    return Mount("ro-bind", LAUNCHER_MOUNT, reachable(LAUNCHER, stage / "python-kernel_jail.py"))


def kernel_env(tools: Path, sandbox: ExecEnv, launch: Mount) -> tuple[list[str], ExecEnv]:
    """argv, mounts and variables for a kernel over the sandbox's environment (``sandbox``, possibly empty)."""
    has_env = any(m.dest == ENV_MOUNT for m in sandbox.mounts)
    python = f"{ENV_MOUNT}/bin/python" if has_env else TARGET_PYTHON
    env = dict(sandbox.env)
    # Set by the launcher once ipykernel is imported (its own bytecode lies beside its sources).
    prefix = env.pop("PYTHONPYCACHEPREFIX", None)
    argv = [python, LAUNCHER_MOUNT, CONNECTION_FILE, TOOLS_MOUNT, *([prefix] if prefix else [])]
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"  # figures come back as images
    mounts = (*sandbox.mounts, Mount("ro-bind", TOOLS_MOUNT, tools), launch)
    return argv, ExecEnv(mounts=mounts, env=env)


def added_path_code(path: str) -> str:
    """What puts a linked-in site-packages folder (a path in the jail) first on a running kernel's path."""
    return f"import sys, importlib\nsys.path.insert(0, {json.dumps(path)})\nimportlib.invalidate_caches()\n"


def cell_imports(code: str) -> list[str]:
    """A cell's absolute imports as plain import lines (optional ones guarded), for the context's source file.
    IPython's magic and shell lines are left out; a cell that does not parse is read by pattern."""
    plain = "\n".join("" if _MAGIC.match(line) else line for line in code.splitlines())
    try:
        found = collect_imports(ast.parse(plain))
    except (SyntaxError, ValueError):
        found = fallback_imports(plain.encode())
    return list(dict.fromkeys(_line(i) for i in found if i.level == 0 and i.module))


def _line(found: RawImport) -> str:
    statement = f"from {found.module} import {', '.join(found.names)}" if found.names else f"import {found.module}"
    return f"try:\n    {statement}\nexcept ImportError:\n    pass" if found.optional else statement
