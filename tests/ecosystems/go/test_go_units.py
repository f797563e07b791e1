"""Go pieces offline: import parsing, go.mod reading, purls, license texts, the synthetic main, and the
layered GOCACHEPROG cache spoken over its real protocol."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

from cloche.ecosystems.go import gomod
from cloche.ecosystems.go.cacheprog import Layer, LayeredCache, serve
from cloche.ecosystems.go.ecosystem import synthetic_main


def test_imports_single_grouped_aliased_and_commented() -> None:
    source = (
        'package main\n\nimport "fmt"\nimport str "strings"\n\n// import "commented.example/x"\n'
        'import (\n\t"os"\n\t_ "example.com/blank"\n\t. "example.com/dot"\n\t/* "in.comment/y" */\n'
        '\talias "github.com/a/b/v2"\n)\n\nfunc main() { fmt.Println("import \\"not/me\\"") }\n'
    )
    assert gomod.imports(source) == [
        "example.com/blank",
        "example.com/dot",
        "fmt",
        "github.com/a/b/v2",
        "os",
        "strings",
    ]
    assert gomod.is_standard("net/http") and not gomod.is_standard("golang.org/x/text")


def test_parse_gomod() -> None:
    text = (
        "module example.com/app // comment\n\ngo 1.22\n\nrequire github.com/a/b v1.2.3\n\nrequire (\n"
        "\tgolang.org/x/text v0.14.0 // indirect\n\tgithub.com/c/d v0.0.0-2024-abcdef\n)\n"
    )
    parsed = gomod.parse_gomod(text)
    assert parsed.module == "example.com/app" and parsed.go == "1.22" and not parsed.local_replace
    assert [(r.path, r.version, r.indirect) for r in parsed.requires] == [
        ("github.com/a/b", "v1.2.3", False),
        ("golang.org/x/text", "v0.14.0", True),
        ("github.com/c/d", "v0.0.0-2024-abcdef", False),
    ]
    assert gomod.parse_gomod("module m\nreplace x => ../x\n").local_replace
    assert not gomod.parse_gomod("module m\nreplace x => y v1.0.0\n").local_replace


def test_covered_purl_escape_and_licenses() -> None:
    assert gomod.covered("github.com/a/b/sub", ["github.com/a/b", "github.com/a/b/sub"]) == "github.com/a/b/sub"
    assert gomod.covered("github.com/a/bc", ["github.com/a/b"]) is None
    assert gomod.purl("github.com/Owner/repo", "v1.0.0") == "pkg:golang/github.com/Owner/repo@v1.0.0"
    assert gomod.escape_path("github.com/BurntSushi/toml") == "github.com/!burnt!sushi/toml"
    assert gomod.guess_license("Permission is hereby granted, free of charge, to any person") == "MIT"
    assert gomod.guess_license("Apache License\n Version 2.0, January 2004") == "Apache-2.0"
    bsd = "Redistribution and use in source and binary forms ... Neither the name of"
    assert gomod.guess_license(bsd) == "BSD-3-Clause"
    assert gomod.guess_license("All rights reserved.") is None


def test_components_from_the_lock(tmp_path: Path) -> None:
    lock = json.dumps({"go.mod": "module sandbox\n\ngo 1.27\n\nrequire example.com/A v1.0.0\n", "go.sum": ""})
    (tmp_path / "example.com" / "!a@v1.0.0").mkdir(parents=True)
    (tmp_path / "example.com" / "!a@v1.0.0" / "LICENSE").write_text("Permission is hereby granted, free of charge")
    [component] = gomod.components(lock, "scan", tmp_path)
    assert (component.name, component.version, component.license) == ("example.com/A", "v1.0.0", "MIT")
    assert component.purl == "pkg:golang/example.com/A@v1.0.0"


def test_synthetic_main() -> None:
    assert synthetic_main(("fmt", "example.com/x")) == (
        'package main\n\nimport (\n\t_ "example.com/x"\n\t_ "fmt"\n)\n\nfunc main() {}\n'
    )
    assert synthetic_main(()) == "package main\n\nfunc main() {}\n"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _session(cache: LayeredCache, requests: list[dict[str, object] | str]) -> list[dict[str, object]]:
    # Go writes each request as a JSON line plus a blank line, then a put's body as a base64 JSON string.
    lines = "".join((json.dumps(r) + "\n\n") if isinstance(r, dict) else json.dumps(r) + "\n" for r in requests)
    out = io.StringIO()
    serve(cache, io.StringIO(lines), out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_cacheprog_layers(tmp_path: Path) -> None:
    action, output, body = b"\x01" * 32, b"\x02" * 32, b"compiled object"
    shared = Layer(str(tmp_path / "shared"))
    env = LayeredCache(Layer(str(tmp_path / "env")), [], shared)
    replies = _session(
        env,
        [
            {"ID": 1, "Command": "get", "ActionID": _b64(action)},
            {"ID": 2, "Command": "put", "ActionID": _b64(action), "OutputID": _b64(output), "BodySize": len(body)},
            _b64(body),
            {"ID": 3, "Command": "get", "ActionID": _b64(action)},
            {"ID": 4, "Command": "close"},
        ],
    )
    assert replies[0] == {"ID": 0, "KnownCommands": ["get", "put", "close"]}
    assert replies[1] == {"ID": 1, "Miss": True}
    assert Path(str(replies[2]["DiskPath"])).read_bytes() == body
    assert replies[3]["OutputID"] == _b64(output) and replies[3]["Size"] == len(body)
    assert replies[4] == {"ID": 4}
    assert shared.lookup(action.hex()) is not None  # written through to the shared layer
    # A second environment gets the shared hit copied into its own layer.
    other = LayeredCache(Layer(str(tmp_path / "env2")), [], shared)
    hit = _session(other, [{"ID": 1, "Command": "get", "ActionID": _b64(action)}])[1]
    assert str(hit["DiskPath"]).startswith(str(tmp_path / "env2"))
    # A run reads the environment's layer and writes only its own.
    (tmp_path / "env").chmod(0o555)
    run = LayeredCache(Layer(str(tmp_path / "run")), [Layer(str(tmp_path / "env"))], None)
    new_action = b"\x03" * 32
    replies = _session(
        run,
        [
            {"ID": 1, "Command": "get", "ActionID": _b64(action)},
            {"ID": 2, "Command": "put", "ActionID": _b64(new_action), "OutputID": _b64(output), "BodySize": 0},
        ],
    )
    assert str(replies[1]["DiskPath"]).startswith(str(tmp_path / "env"))
    assert str(replies[2]["DiskPath"]).startswith(str(tmp_path / "run"))
    (tmp_path / "env").chmod(0o755)
