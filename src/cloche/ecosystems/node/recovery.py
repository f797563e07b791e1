"""Verify, then repair: the scanned specifiers of a Node entry load in the environment just built, or their
packages are backed off to older releases, rebuilt in the same install jail and checked again.

The registry's facts chose each release before the install (release_fit.py); what they cannot show (a file
a subpath names that a release without an ``exports`` map dropped, an export name an ES module no longer
has) shows here. Each round backs every failing package off to the newest older release the facts say fits
(``Vetting.older_fit``), re-locks, rebuilds and checks again, at most ``MAX_ROUNDS`` rounds; every step is
reported with its outcome. A package with no older fitting release is given up on (reported, not retried).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from cloche.ecosystems.base import ImportFailure, InstallFailed, InstallJail, Lock, RecoveryStep, Verification
from cloche.ecosystems.node.detect import NodeDetection
from cloche.ecosystems.node.load_check import LoadFailure, checks_of, load_failures
from cloche.ecosystems.node.lockfile import root_manifest, top_level_version
from cloche.ecosystems.node.vetting import Vetting

MAX_ROUNDS = 3
BACKOFF = "version_backoff"

Relock = Callable[[Mapping[str, Any]], Awaitable[Lock]]
Rebuild = Callable[[Lock], Awaitable[None]]


async def verify_and_repair(
    found: NodeDetection,
    lock: Lock,
    jail: InstallJail,
    env_mount: str,
    vetting: Vetting,
    relock: Relock,
    rebuild: Rebuild,
) -> Verification:
    """Check ``lock``'s environment (built in ``jail`` at ``env_mount``) and repair it; the Verification's
    lock is what the build directory holds at the end."""
    usages = {u.package: u for u in found.usages}
    dependencies = dict(found.manifest_json.get("dependencies", {}))
    steps: list[RecoveryStep] = []
    given_up: set[str] = set()
    failures = await load_failures(jail, env_mount, found.usages)
    for _ in range(MAX_ROUNDS):
        tried: list[tuple[LoadFailure, str, str]] = []  # (failure, release tried, why)
        for failure in {f.package: f for f in failures if f.package not in given_up}.values():
            installed = top_level_version(lock.text, failure.package) or "?"
            why = f"{failure.package}@{installed}: {failure.code}: {failure.message}"
            older = await asyncio.to_thread(vetting.older_fit, usages[failure.package], installed)
            if older is None:
                given_up.add(failure.package)
                detail = f"{why}; no older release fits"
                steps.append(
                    RecoveryStep(BACKOFF, failure.specifier, f"{failure.package}@{installed}", "failed", detail)
                )
                continue
            dependencies[failure.package] = older
            tried.append((failure, older, why))
        if not tried:
            break
        try:
            new_lock = await relock(root_manifest({"dependencies": dependencies}))
            await rebuild(new_lock)
        except InstallFailed as e:
            for failure, older, why in tried:
                detail = f"{why}; {e.message[:300]}"
                steps.append(
                    RecoveryStep(BACKOFF, failure.specifier, f"{failure.package}@{older}", "not_installable", detail)
                )
            await rebuild(lock)  # back to what was checked, so the verification's lock is what the folder holds
            break
        lock = new_lock
        failures = await load_failures(jail, env_mount, found.usages)
        still = {f.specifier for f in failures}
        for failure, older, why in tried:
            outcome = "failed" if failure.specifier in still else "fixed"
            steps.append(RecoveryStep(BACKOFF, failure.specifier, f"{failure.package}@{older}", outcome, why))
    return Verification(
        lock=lock,
        checked=len(checks_of(found.usages)),
        failures=tuple(ImportFailure(f.specifier, f"{f.code}: {f.message}") for f in failures),
        steps=tuple(steps),
    )
