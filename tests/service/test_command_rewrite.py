"""Which workspace file a typed entry runs, and what the jail runs instead of what was typed."""

from __future__ import annotations

from pathlib import Path

from cloche.ecosystems.base import Ecosystem
from cloche.ecosystems.go.ecosystem import GoEcosystem, find_goroot
from cloche.ecosystems.java.ecosystem import JavaEcosystem
from cloche.ecosystems.python.ecosystem import PythonEcosystem
from cloche.service.command_deps import entry_file, rewritten
from cloche.service.commands import parse


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def entries(root: Path, command: str, by: dict[str, Ecosystem]) -> dict[int, tuple[Ecosystem, str]]:
    found: dict[int, tuple[Ecosystem, str]] = {}
    for entry in parse(command).entries:
        path = entry_file(root, entry)
        if path is not None:
            found[entry.segment] = (by[entry.language], path)
    return found


def test_entry_files(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "pkg/mod.py": "",
            "app/__main__.py": "",
            "cmd/tool/util.go": "",
            "cmd/tool/main.go": "",
            "cmd/tool/main_test.go": "",
            "cmd/tool/sub/x.go": "",
            "lib/a.go": "",
        },
    )

    def found(command: str) -> list[str | None]:
        return [entry_file(tmp_path, e) for e in parse(command).entries]

    assert found("python -m pkg.mod && python -m app && python -m http.server") == [
        "pkg/mod.py",
        "app/__main__.py",
        None,
    ]
    assert found("go run ./cmd/tool && cd lib && go run .") == ["cmd/tool/main.go", "lib/a.go"]
    assert found("python missing.py") == [None]  # runs as typed: python says what is wrong


def test_go_and_java_run_through_their_runner_and_installs_become_no_ops(tmp_path: Path) -> None:
    write(tmp_path, {"main.go": "", "src/Main.java": "", "main.py": ""})
    by: dict[str, Ecosystem] = {"go": GoEcosystem(find_goroot()), "java": JavaEcosystem(), "python": PythonEcosystem()}
    command = "pip install x >/dev/null && GOFLAGS='-v x' go run . a 'b c' | java src/Main.java && python main.py"
    jail = rewritten(parse(command), entries(tmp_path, command, by))
    assert jail == (
        ": >/dev/null && GOFLAGS='-v x' /usr/bin/python3 -I /opt/cloche/go-tools/run.py main.go a 'b c' | "
        "/usr/bin/python3 -I /opt/cloche/java-tools/run.py src/Main.java && python main.py"
    )
    expanded = "go run . $ARG"
    assert rewritten(parse(expanded), entries(tmp_path, expanded, by)) == expanded  # re-quoting would change it
