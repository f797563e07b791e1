"""Dependencies for a shell command: the same preparation a filename exec gets, for every entry point the command
starts, plus the package installs it types (``pip install x``), which the server performs itself.

The command is read by ``commands.parse``. Typed installs change the sandbox's declared needs (kept in the
metadata store, never written into the workspace) and are installed through the environment store like any other
need; their simple commands are then replaced by ``:`` so nothing runs a package manager in the jail, and a
command that is only installs does not start a jail at all. ``go run`` and ``java X.java`` are replaced by their
ecosystem's runner (which builds against the environment). A command the reader does not understand runs as
typed, with the environments the sandbox already has.
"""

from __future__ import annotations

import posixpath
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cloche.ecosystems.base import Component, Ecosystem, Needs, Quirk
from cloche.ecosystems.registry import EcosystemRegistry
from cloche.errors import ClocheError
from cloche.models import InstallReport
from cloche.service.command_lexer import EXPANSION
from cloche.service.commands import ParsedCommand, RunEntry, parse
from cloche.service.deps import DependencyService, Prepared, Progress
from cloche.service.install_commands import InstallRequest
from cloche.service.records import DependencyRecord
from cloche.service.run_env import combine
from cloche.service.sandbox_needs import DECLARED
from cloche.store import safefs

SHELL = "/bin/sh"


@dataclass
class CommandDeps:
    """What an exec needs: the prepared environments, what to run, and what a command's typed installs printed."""

    prepared: Prepared
    argv: list[str] = field(default_factory=list)  # empty: nothing to run (the command was only installs)
    install_output: str = ""


class CommandDependencies:
    def __init__(self, ecosystems: EcosystemRegistry, deps: DependencyService) -> None:
        self.ecosystems = ecosystems
        self.deps = deps

    async def prepare(
        self, sandbox_id: str, language: str | None, root: Path, command: str, progress: Progress | None = None
    ) -> CommandDeps:
        """``language``: the sandbox's, whose record a command that prepares nothing reports."""
        parsed = parse(command)
        try:
            declared = self._declared(sandbox_id, root, parsed.installs)
        except ClocheError as exc:  # a typed name or file that cannot be installed: nothing changes
            return CommandDeps(_refused(exc.message))
        refused = [f"{i.typed}: {reason}" for i in parsed.installs for reason in i.refused]
        if refused:
            return CommandDeps(_refused("\n".join(refused) + "\nNothing was installed."))
        entries = self._entries(root, parsed.entries)
        codes = {e.path: e.code for e in parsed.entries if e.code is not None and e.segment in entries}
        names = list(dict.fromkeys([*(e.name for e, _ in entries.values()), *declared]))
        preparing = [self._ecosystem(n) for n in names]
        results: list[tuple[Ecosystem, Prepared]] = []
        for ecosystem in preparing:
            mine = [path for eco, path in entries.values() if eco.name == ecosystem.name]
            prepared = await self.deps.prepare(
                sandbox_id, ecosystem, root, mine, progress, declared.get(ecosystem.name), codes
            )
            results.append((ecosystem, prepared))
            if prepared.record.error is not None:
                return CommandDeps(prepared)
        # The others as the sandbox has them, untouched; the sandbox's language first (the record is the first's).
        rest = sorted(self.ecosystems.ecosystems, key=lambda e: e.name != language)
        for ecosystem in rest:
            if ecosystem.name not in names:
                results.append((ecosystem, self.deps.current(sandbox_id, ecosystem)))
        merged = _merge(results)
        argv = [] if parsed.only_installs else [SHELL, "-c", rewritten(parsed, entries)]
        return CommandDeps(merged, argv, _install_lines(parsed, results))

    def _ecosystem(self, name: str) -> Ecosystem:
        found = self.ecosystems.by_name(name)
        assert found is not None  # names come from the registry's own ecosystems
        return found

    def _declared(self, sandbox_id: str, root: Path, installs: Sequence[InstallRequest]) -> dict[str, Needs]:
        """Each ecosystem's typed packages after this command's installs, in the order they were typed."""
        declared: dict[str, Needs] = {}
        for request in installs:
            ecosystem = self.ecosystems.by_name(request.ecosystem)
            if ecosystem is None or ecosystem.accumulates is None:
                continue
            if request.ecosystem not in declared:
                stored = [n for n in self.deps.store.get_needs(sandbox_id, request.ecosystem) if n.source == DECLARED]
                declared[request.ecosystem] = (
                    Needs(tuple(stored[0].requirements), tuple(stored[0].optional), tuple(stored[0].constraints))
                    if stored
                    else Needs()
                )
            files = [*request.requirement_files, *request.constraint_files]
            declared[request.ecosystem] = ecosystem.accumulates.declare(
                declared[request.ecosystem], root, request.requirements, files, request.remove
            )
        return declared

    def _entries(self, root: Path, entries: Sequence[RunEntry]) -> dict[int, tuple[Ecosystem, str]]:
        """Entry points by simple-command index, as (ecosystem, workspace file); ones not in the workspace (an
        installed module, a file the command creates first) are left to run as typed."""
        found: dict[int, tuple[Ecosystem, str]] = {}
        for entry in entries:
            ecosystem = self.ecosystems.by_name(entry.language)
            path = entry_file(root, entry)
            if ecosystem is not None and path is not None:
                found[entry.segment] = (ecosystem, path)
        return found


def rewritten(parsed: ParsedCommand, entries: Mapping[int, tuple[Ecosystem, str]]) -> str:
    """What runs in the jail: typed installs replaced by ``:``, entries of ecosystems that need their runner
    replaced by it."""
    replacements = {i.segment: ":" for i in parsed.installs}
    for entry in parsed.entries:
        if entry.segment not in entries or any(EXPANSION.search(a) for a in entry.args):
            continue  # not prepared, or arguments the shell still expands (re-quoting would change them)
        ecosystem, path = entries[entry.segment]
        if Quirk.RUNS_THROUGH_ITS_RUNNER in ecosystem.quirks:
            segment = parsed.segments[entry.segment]
            assignments = [_assignment(a) for a in segment.assignments]
            replacements[entry.segment] = " ".join([*assignments, shlex.join(ecosystem.command(path, [*entry.args]))])
    return parsed.rewritten(replacements)


def _assignment(word: str) -> str:
    name, _, value = word.partition("=")
    return f"{name}={shlex.quote(value)}"


def entry_file(root: Path, entry: RunEntry) -> str | None:
    """The workspace file an entry runs: the file itself, a module's file, or a Go package's main file (for
    ``python -c``, the name its code stands under, which is never read)."""
    if entry.code is not None:
        return entry.path
    if entry.module is not None:
        base = posixpath.join(entry.path, *entry.module.split("."))
        candidates = [f"{base}.py", posixpath.join(base, "__main__.py")]
    elif entry.package:
        candidates = _go_files(root, entry.path)
    else:
        candidates = [entry.path]
    for candidate in candidates:
        try:
            info = safefs.lookup(root, candidate)
        except ClocheError:
            continue
        if info is not None and info.type == "file":
            return candidate
    return None


def _go_files(root: Path, folder: str) -> list[str]:
    """``main.go`` first, then the folder's other Go files (any of them names the package)."""
    try:
        listing = safefs.list_dir(root, folder, with_sha256=False, prune=lambda _: True)  # this folder only
    except ClocheError:
        return []
    names = sorted(i.path for i in listing if i.type == "file" and i.path.endswith(".go"))
    names = [n for n in names if not n.endswith("_test.go")]
    main = posixpath.join(folder, "main.go")
    return [main, *(n for n in names if n != main)] if main in names else names


def _merge(results: Sequence[tuple[Ecosystem, Prepared]]) -> Prepared:
    """One Prepared for the run: every ecosystem's environment side by side; the record is the first prepared
    ecosystem's (the others' installs and import advice added to it)."""
    if not results:
        return Prepared(DependencyRecord())
    first = results[0][1].record
    others = [p.record for _, p in results[1:]]
    install = first.install
    if install is not None:
        more = [i for r in others if r.install is not None for i in r.install.installed]
        install = install.model_copy(update={"installed": [*install.installed, *more]})
    record = first.model_copy(
        update={
            "install": install,
            "unlisted_imports": [*first.unlisted_imports, *(u for r in others for u in r.unlisted_imports)],
            "unresolved_imports": [*first.unresolved_imports, *(u for r in others for u in r.unresolved_imports)],
        }
    )
    return Prepared(record, combine([p.exec_env for _, p in results]))


def _refused(message: str) -> Prepared:
    install = InstallReport(source="command", requested=[], installed=[], reused_environment=False, error=message)
    return Prepared(DependencyRecord(install=install))


def _install_lines(parsed: ParsedCommand, results: Sequence[tuple[Ecosystem, Prepared]]) -> str:
    """What the typed installs did, in pip's words: one line per package named."""
    lines: list[str] = []
    by_ecosystem = {e.name: (e, p) for e, p in results}
    for request in parsed.installs:
        found = by_ecosystem.get(request.ecosystem)
        if found is None or found[0].accumulates is None:
            continue
        accumulates, prepared = found[0].accumulates, found[1]
        lines += [f"Note: {note}" for note in request.notes]
        record = prepared.record
        installed = {accumulates.package(c.name): c for c in record.components}
        fresh = {(c.name, c.version) for c in (record.install.installed if record.install else [])}
        for requirement in request.requirements:
            name = accumulates.package(requirement)
            component = installed.get(name)
            if request.remove:
                lines.append(f"Removed {name} from the sandbox's packages")
            elif component is None:
                lines.append(f"{name} is declared for the sandbox environment")
            elif (component.name, component.version) in fresh:
                lines.append(f"Successfully installed {_pinned(component)} (into the sandbox environment)")
            else:
                lines.append(f"Requirement already satisfied: {_pinned(component)} (in the sandbox environment)")
        for name in request.requirement_files:
            lines.append(f"Installed the requirements of {name} into the sandbox environment")
        if request.ecosystem == "node" and not request.requirements:
            lines.append("package.json dependencies are installed for every run (into the sandbox environment)")
    return "".join(f"{line}\n" for line in lines)


def _pinned(component: Component) -> str:
    return f"{component.name}-{component.version}"
