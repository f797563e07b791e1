"""The corpus's programs and verdicts: an entry's recorded imports as a runnable file, and what a run's output says.

Pure functions (no server, no network), so the rules are tested on their own:

- ``python_program`` / ``node_program``: a ``main.py`` or ``main.js``/``main.mjs`` that performs exactly the entry's
  recorded imports, in their order, with the names of ``from x import a, b`` (or ``import {a, b} from 'x'``), and
  the ``try`` guards the script had; nothing else.
- ``verdict``: import-clean or not, and the failure's class, read from the exec's status, exit code, output and
  install report.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

# ---------------------------------------------------------------------------------------------- programs


def python_program(entry: dict[str, Any]) -> str:
    """``main.py`` for a Python entry: ``__future__`` imports first (Python requires it), then the rest in order."""
    imports = entry["imports"]
    ordered = [i for i in imports if i["module"] == "__future__"] + [i for i in imports if i["module"] != "__future__"]
    lines = [f"# corpus entry {entry['id']}: its imports only"]
    for item in ordered:
        statement = (
            f"import {item['module']}"
            if item["names"] is None
            else f"from {item['module']} import {', '.join(item['names'])}"
        )
        if item["guarded"]:
            lines += ["try:", f"    {statement}", "except ImportError:", "    pass"]
        else:
            lines.append(statement)
    return "\n".join(lines) + "\n"


def node_filename(entry: dict[str, Any]) -> str:
    return "main.mjs" if entry["module"] == "esm" else "main.js"


def _esm_import(item: dict[str, Any], n: int) -> str:
    spec = json.dumps(item["specifier"])
    names = item["names"] or []
    if not names:
        return f"import {spec};"
    if "*" in names:
        return f"import * as _ns{n} from {spec};"
    default = "default" in names
    named = [f"{name} as _n{n}_{k}" for k, name in enumerate(x for x in names if x != "default")]
    parts = ([f"_d{n}"] if default else []) + (["{ " + ", ".join(named) + " }"] if named else [])
    return f"import {', '.join(parts)} from {spec};"


def node_program(entry: dict[str, Any]) -> str:
    """``main.js`` (CommonJS) or ``main.mjs`` (ES module) for a Node entry."""
    esm = entry["module"] == "esm"
    lines = [f"// corpus entry {entry['id']}: its imports only"]
    if esm and any(i["form"] == "require" for i in entry["imports"]):
        lines += ['import { createRequire } from "node:module";', "const require = createRequire(import.meta.url);"]
    body: list[str] = []
    for n, item in enumerate(entry["imports"]):
        spec = json.dumps(item["specifier"])
        if item["form"] in ("import", "export"):
            lines.append(_esm_import(item, n))  # static imports are hoisted: they stay at the top
            continue
        if item["form"] == "dynamic":
            statement = f"await import({spec});" if esm else f"import({spec}).catch((e) => {{ _fail(e); }});"
        else:
            statement = f"require({spec});"
        body.append(f"try {{ {statement} }} catch {{}}" if item["guarded"] else statement)
    if not esm and any(i["form"] == "dynamic" for i in entry["imports"]):
        lines.append("function _fail(e) { console.error(e); process.exitCode = 1; }")
    return "\n".join(lines + body) + "\n"


# ---------------------------------------------------------------------------------------------- verdicts

PY_NOT_FOUND = re.compile(r"ModuleNotFoundError: No module named '([^']+)'")
PY_CANNOT_IMPORT = re.compile(r"ImportError: cannot import name '([^']+)' from '([^']+)'")
PY_IMPORT_ERROR = re.compile(r"ImportError: (.+)")
JS_NOT_FOUND = re.compile(r"Cannot find (?:module|package) '([^']+)'")
JS_NOT_EXPORTED = re.compile(r"ERR_PACKAGE_PATH_NOT_EXPORTED[^\n]*?'([^']+)'|Package subpath '([^']+)'")
JS_NO_EXPORT = re.compile(r"does not provide an export named '([^']+)'")
JS_REQUIRE_ESM = re.compile(r"ERR_REQUIRE_ESM|require\(\) of ES Module")
CLIENT_TIMEOUT = re.compile(r"\bReadTimeout\b")
LAST_ERROR_LINE = re.compile(r"^(\w+(?:\.\w+)*(?:Error|Exception|Exit)\b.*)$", re.M)

# cloche's wording when it refuses a project whose classifiers name only another operating system (see the long-tail
# layer), and when an import is Python 2's name of a standard-library module: the bench counts such a script as one
# no installer can make import on Linux with Python 3 only when the baseline fails on it too.
PY_PLATFORM_ONLY = re.compile(r"\bruns only on (Windows|macOS)\b")
PY_PYTHON2_ONLY = re.compile(r"\bis Python 2's name for the standard library's\b")
CANNOT_RUN_HERE = ("platform_only", "python2_only")

CLASSES = {
    "platform_only": "the import's project runs only on another operating system (its PyPI classifiers), so no "
    "install on Linux can make it import; counted as a failure in the headline rate, and left out of the "
    "runnable rate when the baseline fails on the script too",
    "python2_only": "the import is Python 2's name of a standard-library module (urllib2, cookielib): the script "
    "needs porting, no package makes it import; treated like platform_only",
    "unresolved": "no distribution vouched for the import: reported in unresolved_imports, nothing installed",
    "not_found_after_install": "the import is missing although the install succeeded (wrong or missing distribution)",
    "missing_submodule": "the package imports but a submodule is missing: removed in the installed release (API "
    "drift), or a namespace package whose distribution was not installed",
    "api_drift": "the installed release lacks an imported name or subpath (ImportError: cannot import name, "
    "ERR_PACKAGE_PATH_NOT_EXPORTED, no such export)",
    "esm_only": "an ES-module-only release required from CommonJS (ERR_REQUIRE_ESM)",
    "import_error": "ImportError of another kind (a missing system library, an undeclared runtime dependency)",
    "install_failed": "the install step failed",
    "import_time_error": "the import raised something other than ImportError (needs a display, a config, ...)",
    "timeout": "the exec ran out of time",
    "client_timeout": "no answer within the bench's client timeout (an install longer than that: a source build "
    "such as dlib's, or a very large wheel set); the server finishes it, but the entry is counted as failed",
    "error": "cloche or the harness failed (HTTP error, unexpected status)",
}


@dataclass
class Verdict:
    """An entry's outcome in one variant: clean, or the failure's class with the module concerned."""

    clean: bool
    failure: str | None = None
    module: str | None = None
    detail: str = ""
    unresolved: list[str] = field(default_factory=list)
    requested: list[str] = field(default_factory=list)
    platform_only: list[str] = field(default_factory=list)  # unresolved imports refused for their platform
    python2_only: list[str] = field(default_factory=list)  # unresolved imports that are Python 2 module names

    def as_dict(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "failure": self.failure,
            "module": self.module,
            "detail": self.detail,
            "unresolved": self.unresolved,
            "requested": self.requested,
            "platform_only": self.platform_only,
            "python2_only": self.python2_only,
        }


INSTALL_CAUSE = re.compile(
    r"^.*(Failed to (?:build|download|fetch)|No solution found|not found in the package registry|Because |"
    r"npm (?:error|ERR!) (?:code|404|notarget)|E404|ETARGET|ERESOLVE|refused|not vouched).*$",
    re.M,
)


def _install_error(text: str) -> str:
    """The installer's line that names the cause (uv's and npm's), else the last line."""
    found = INSTALL_CAUSE.search(text)
    return found.group(0).strip()[:300] if found else _last_error(text)


def _last_error(output: str) -> str:
    found = LAST_ERROR_LINE.findall(output)
    if found:
        return str(found[-1])[:300]
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _same_import(module: str, names: list[str]) -> bool:
    top = module.split(".")[0]
    return any(u == module or u.split(".")[0] == top for u in names)


def _python_failure(output: str, unresolved: list[str], elsewhere: dict[str, list[str]]) -> tuple[str, str | None]:
    if m := PY_NOT_FOUND.search(output):
        module = m.group(1)
        for kind, modules in elsewhere.items():
            if _same_import(module, modules):
                return kind, module
        if _same_import(module, unresolved):
            return "unresolved", module
        return ("missing_submodule" if "." in module else "not_found_after_install"), module
    if m := PY_CANNOT_IMPORT.search(output):
        return "api_drift", f"{m.group(2)}.{m.group(1)}"
    if PY_IMPORT_ERROR.search(output):
        return "import_error", None
    return "import_time_error", None


def _node_failure(output: str, unresolved: list[str], elsewhere: dict[str, list[str]]) -> tuple[str, str | None]:
    if m := JS_NOT_EXPORTED.search(output):
        return "api_drift", m.group(1) or m.group(2)
    if m := JS_NOT_FOUND.search(output):
        module = m.group(1)
        if module.startswith(("/", ".")):
            return "not_found_after_install", module
        package = "/".join(module.split("/")[:2]) if module.startswith("@") else module.split("/")[0]
        # cloche reports a specifier (`lodash/fp`, `path/to/x`) or its package as unresolved.
        reported = module in unresolved or package in unresolved
        return ("unresolved" if reported else "not_found_after_install"), module
    if m := JS_NO_EXPORT.search(output):
        return "api_drift", m.group(1)
    if JS_REQUIRE_ESM.search(output):
        return "esm_only", None
    return "import_time_error", None


def verdict(ecosystem: str, result: dict[str, Any]) -> Verdict:
    """Import-clean = the exec succeeded with exit 0 and no import failure in its output."""
    output = result.get("output") or ""
    install = result.get("install") or {}
    unresolved_imports = result.get("unresolved_imports") or []
    unresolved = [u["module"] for u in unresolved_imports]
    elsewhere = {
        kind: [u["module"] for u in unresolved_imports if pattern.search(u.get("hint") or "")]
        for kind, pattern in (("platform_only", PY_PLATFORM_ONLY), ("python2_only", PY_PYTHON2_ONLY))
    }
    base = {"unresolved": unresolved, "requested": list(install.get("requested") or []), **elsewhere}
    status = result.get("status")
    if status == "install_failed":
        error = install.get("error") or output
        return Verdict(False, "install_failed", None, _install_error(error), **base)
    if status == "timed_out":
        return Verdict(False, "timeout", None, "", **base)
    markers = (PY_NOT_FOUND, PY_IMPORT_ERROR) if ecosystem == "python" else (JS_NOT_FOUND, JS_NOT_EXPORTED)
    failed_import = any(m.search(output) for m in markers)
    if status == "succeeded" and result.get("exit_code") == 0 and not failed_import:
        return Verdict(True, **base)
    if status == "error" and CLIENT_TIMEOUT.search(output):
        return Verdict(False, "client_timeout", None, _last_error(output), **base)
    if status not in ("succeeded", "failed"):
        return Verdict(False, "error", None, f"status {status}: {_last_error(output)}", **base)
    kind, module = (_python_failure if ecosystem == "python" else _node_failure)(output, unresolved, elsewhere)
    return Verdict(False, kind, module, _last_error(output), **base)
