"""Compile and run a Java entry *inside the exec jail*, as the sandbox's uid: ``python3 -I run.py ENTRY ARGS...``.

``javac -sourcepath <source root> ENTRY`` compiles the entry and every workspace class it reaches into
``/sandbox/.cloche/java/<entry>/classes``; a stamp (sha256 of every ``.java`` file under the source root
and of the classpath) skips javac entirely when nothing changed, so a second run starts the JVM at once.
The main class is the entry's (its ``package`` plus file name), or ``CLOCHE_JAVA_MAIN`` when the entry
declares no ``main`` method. Dependencies come from ``CLOCHE_JAVA_CLASSPATH`` (the environment's jars).

The egress proxy is handed to the JVM as ``-D`` options rather than through ``JAVA_TOOL_OPTIONS``, whose
"Picked up ..." banner would otherwise land in the program's stderr. Standard library only.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys

WORKSPACE = "/sandbox"
OUT = f"{WORKSPACE}/.cloche/java"
SKIP = {".cloche", ".git", "node_modules", "target", "build", ".gradle"}
_PACKAGE = re.compile(r"^\s*package\s+([\w.]+)\s*;", re.MULTILINE)
_MAIN = re.compile(r"\bstatic\s+(?:public\s+)?void\s+main\s*\(|\bvoid\s+main\s*\(\s*\)")


def source_root(entry_dir: str, package: str) -> str:
    suffix = package.replace(".", "/")
    if package and (entry_dir == suffix or entry_dir.endswith("/" + suffix)):
        return entry_dir[: len(entry_dir) - len(suffix)].rstrip("/")
    return entry_dir


def digest(root: str, classpath: str) -> str:
    h = hashlib.sha256(classpath.encode())
    for folder, dirs, files in os.walk(os.path.join(WORKSPACE, root) if root else WORKSPACE):
        dirs[:] = sorted(d for d in dirs if d not in SKIP and not d.startswith("."))
        for name in sorted(f for f in files if f.endswith(".java")):
            path = os.path.join(folder, name)
            h.update(path.encode() + b"\0")
            with open(path, "rb") as handle:
                h.update(hashlib.sha256(handle.read()).digest())
    return h.hexdigest()


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: run.py ENTRY [ARGS...]", file=sys.stderr)
        return 2
    entry, args = os.path.normpath(argv[0]), argv[1:]
    with open(os.path.join(WORKSPACE, entry), encoding="utf-8", errors="replace") as handle:
        text = handle.read()
    found = _PACKAGE.search(text)
    package = found.group(1) if found else ""
    root = source_root(os.path.dirname(entry), package)
    stem = os.path.splitext(os.path.basename(entry))[0]
    main_class = f"{package}.{stem}" if package else stem
    if not _MAIN.search(text) and os.environ.get("CLOCHE_JAVA_MAIN"):
        main_class = os.environ["CLOCHE_JAVA_MAIN"]
    jvm = shlex.split(os.environ.pop("JAVA_TOOL_OPTIONS", ""))
    deps = os.environ.get("CLOCHE_JAVA_CLASSPATH", "")
    out = os.path.join(OUT, re.sub(r"[^A-Za-z0-9_.-]", "_", entry))
    classes = os.path.join(out, "classes")
    stamp = digest(root, deps)
    try:
        with open(os.path.join(out, "stamp"), encoding="ascii") as handle:
            fresh = handle.read() == stamp
    except OSError:
        fresh = False
    if not fresh:
        shutil.rmtree(classes, ignore_errors=True)
        os.makedirs(classes, exist_ok=True)
        javac = ["javac", *(f"-J{o}" for o in jvm), "-d", classes, "-encoding", "UTF-8", "-nowarn"]
        javac += ["-XDsuppressNotes", "-implicit:class", "-sourcepath", os.path.join(WORKSPACE, root)]
        if deps:
            javac += ["-cp", deps]
        compiled = subprocess.run([*javac, os.path.join(WORKSPACE, entry)], cwd=WORKSPACE)
        if compiled.returncode != 0:
            return compiled.returncode
        with open(os.path.join(out, "stamp"), "w", encoding="ascii") as handle:
            handle.write(stamp)
    extra = [p for p in os.environ.get("CLOCHE_JAVA_RESOURCES", "").split(":") if p]
    classpath = ":".join([classes, *extra, *([deps] if deps else [])])
    sys.stdout.flush()
    os.execvp("java", ["java", *jvm, "-cp", classpath, main_class, *args])
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
