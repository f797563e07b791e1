"""A file:// GOPROXY fixture: the module proxy protocol's files (``<module>/@v/list``, ``.info``, ``.mod``,
``.zip``) laid out in a folder, so the real go command resolves and downloads with no network."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

MIT = (
    "MIT License\n\nCopyright (c) 2024 cloche tests\n\nPermission is hereby granted, free of charge, to any person "
    "obtaining a copy of this software, to deal in the Software without restriction.\n"
)


def add_module(
    proxy: Path, path: str, version: str, files: dict[str, str], requires: dict[str, str] | None = None
) -> None:
    """Publish ``path@version`` with ``files`` (name -> Go source) and ``requires`` (module -> version)."""
    gomod = f"module {path}\n\ngo 1.21\n"
    if requires:
        gomod += "\nrequire (\n" + "".join(f"\t{m} {v}\n" for m, v in sorted(requires.items())) + ")\n"
    folder = proxy / path / "@v"
    folder.mkdir(parents=True, exist_ok=True)
    listed = folder / "list"
    versions = set(listed.read_text().split()) if listed.exists() else set()
    listed.write_text("".join(f"{v}\n" for v in sorted(versions | {version})))
    (folder / f"{version}.info").write_text(json.dumps({"Version": version, "Time": "2024-01-01T00:00:00Z"}))
    (folder / f"{version}.mod").write_text(gomod)
    with zipfile.ZipFile(folder / f"{version}.zip", "w") as archive:
        prefix = f"{path}@{version}/"
        archive.writestr(prefix + "go.mod", gomod)
        archive.writestr(prefix + "LICENSE", MIT)
        for name, text in files.items():
            archive.writestr(prefix + name, text)


def standard_proxy(proxy: Path) -> Path:
    """``example.com/greet`` v1.0.0 (requires ``example.com/shout`` v1.1.0) and ``example.com/shout``."""
    add_module(
        proxy,
        "example.com/shout",
        "v1.1.0",
        {"shout.go": 'package shout\n\nimport "strings"\n\nfunc Loud(s string) string { return strings.ToUpper(s) }\n'},
    )
    add_module(
        proxy,
        "example.com/greet",
        "v1.0.0",
        {
            "greet.go": 'package greet\n\nimport "example.com/shout"\n\n'
            'func Hello(name string) string { return "hello " + shout.Loud(name) }\n'
        },
        requires={"example.com/shout": "v1.1.0"},
    )
    return proxy
