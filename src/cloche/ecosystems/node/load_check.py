"""After an install: does each scanned specifier load, the way the script loads it? Run in the install jail.

The registry's facts decide most releases before anything installs (release_fit.py), but not all: a
package without an ``exports`` map may have dropped a file a subpath names, and a nested ``package.json``
may make a folder an ES module. So each specifier is loaded once in the install jail where the environment
was just built, ``require``d when the script requires it and ``import``ed otherwise, from the environment's
folder. Only resolution failures count (``RESOLUTION_CODES``): a package that throws while loading (it
wants a config file, a server) is installed as it should be; that is the script's business.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from cloche.ecosystems.base import InstallJail
from cloche.ecosystems.node.release_fit import Usage

CHECK_TIMEOUT = 120.0
MISSING_EXPORT = "ERR_MISSING_EXPORT"  # ours: a name a static import asks for is not in the module's namespace
RESOLUTION_CODES = frozenset(
    {
        "ERR_PACKAGE_PATH_NOT_EXPORTED",
        "ERR_REQUIRE_ESM",
        "ERR_REQUIRE_ASYNC_MODULE",
        "MODULE_NOT_FOUND",
        "ERR_MODULE_NOT_FOUND",
        "ERR_UNSUPPORTED_DIR_IMPORT",
        "ERR_UNKNOWN_FILE_EXTENSION",
        MISSING_EXPORT,
    }
)

# Loads every [specifier, required, names] of /work/checks.json from the current folder (the environment),
# then writes the outcomes to a file: the modules' own output goes to stderr and cannot be mistaken for them.
_CHECK_JS = r"""
const fs = require('fs');
const { createRequire } = require('module');
const load = createRequire(process.cwd() + '/');
const checks = JSON.parse(fs.readFileSync('/work/checks.json', 'utf8'));
(async () => {
  const out = [];
  for (const [spec, required, names] of checks) {
    try {
      if (required) {
        load(spec);
      } else {
        const ns = await import(spec);
        const missing = names.filter((name) => !(name in ns));
        if (missing.length) {
          const message = `The requested module '${spec}' does not provide an export named '${missing[0]}'`;
          out.push({ spec, ok: false, code: 'ERR_MISSING_EXPORT', message });
          continue;
        }
      }
      out.push({ spec, ok: true });
    } catch (e) {
      const message = String((e && e.message) || e).split('\n')[0].slice(0, 300);
      out.push({ spec, ok: false, code: (e && e.code) || null, message });
    }
  }
  fs.writeFileSync('/tmp/cloche-checks.json', JSON.stringify(out));
  process.exit(0);
})();
"""


@dataclass(frozen=True)
class LoadFailure:
    specifier: str
    package: str
    code: str
    message: str


def checks_of(usages: Sequence[Usage]) -> list[tuple[str, str, bool, list[str]]]:
    """(specifier, package, required, names imported) for every specifier the usages name."""
    out = []
    for usage in usages:
        for subpath in usage.subpaths or (".",):
            specifier = usage.package if subpath == "." else usage.package + subpath[1:]
            names = sorted(name for sub, name in usage.names if sub == subpath)
            out.append((specifier, usage.package, usage.required, names))
    return out


async def load_failures(jail: InstallJail, env_mount: str, usages: Sequence[Usage]) -> list[LoadFailure]:
    """The specifiers that do not resolve in the environment built at ``env_mount`` (empty: all load)."""
    checks = checks_of(usages)
    if not checks:
        return []
    files = {"checks.json": json.dumps([[spec, req, names] for spec, _, req, names in checks]), "check.cjs": _CHECK_JS}
    script = f'cd {env_mount} && node -e "$(cat /work/check.cjs)" >&2 && cat /tmp/cloche-checks.json'
    # The environment is mounted read-only: loading a package must not change what gets sealed.
    result = await jail.run(
        ["/bin/sh", "-c", script], files=files, timeout_seconds=CHECK_TIMEOUT, shared_cache=False, build_readonly=True
    )
    if result.status != "succeeded":
        return []  # the check itself could not run: nothing learned, nothing to repair
    try:
        outcomes = json.loads(result.stdout)
    except ValueError:
        return []
    package_of = {spec: package for spec, package, _, _ in checks}
    failures = []
    for o in outcomes:
        if not isinstance(o, dict) or o.get("ok") or o.get("code") not in RESOLUTION_CODES:
            continue
        spec, message = str(o.get("spec")), str(o.get("message", ""))
        # "Cannot find module" counts only for the specifier itself, not for something the package loads.
        if o["code"] in ("MODULE_NOT_FOUND", "ERR_MODULE_NOT_FOUND") and f"'{spec}'" not in message:
            continue
        failures.append(LoadFailure(spec, package_of.get(spec, spec), str(o["code"]), message))
    return failures
