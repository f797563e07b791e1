"""CycloneDX 1.6 SBOMs for one run, built and serialised with cyclonedx-python-lib (never by hand).

Shape of what ``build_sbom`` returns::

    metadata.timestamp       when the run happened (naive datetimes are taken as UTC)
    metadata.tools           cloche (with its version) and cyclonedx-python-lib
    metadata.component       application "cloche-run:<run_id>", properties cloche:sandbox_id, cloche:run_id,
                             cloche:entry, cloche:argv (a JSON list)
    metadata.properties      cloche:toolchain:<name> = <version> for each toolchain entry, cloche:environment
    components[]             type library; name, version, purl, hashes (from "<alg>:<hex>" strings),
                             licenses, property cloche:provenance
    dependencies             the run depends on every component: cloche knows what was installed for the
                             run, not which package pulled in which, so the graph is one level deep

The serial number is derived from (sandbox_id, run_id) and bom-refs from purls, so rebuilding the SBOM of a
run gives the same document.
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cyclonedx.contrib.hash.factories import HashTypeFactory
from cyclonedx.contrib.license.factories import LicenseFactory
from cyclonedx.contrib.this.builders import this_component
from cyclonedx.exception.model import UnknownHashTypeException
from cyclonedx.model import HashType, Property
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component as CdxComponent
from cyclonedx.model.component import ComponentType
from cyclonedx.model.license import License, LicenseAcknowledgement
from cyclonedx.model.tool import ToolRepository
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema import SchemaVersion
from packageurl import PackageURL

import cloche

if TYPE_CHECKING:  # the validator pulls in jsonschema's format checkers: seconds of import time the server never needs
    from cyclonedx.validation.json import JsonStrictValidator
from cloche.ecosystems.base import Component
from cloche.sbom.licenses import spdx_id, text_to_spdx

_HEX = re.compile(r"[0-9a-fA-F]{32}|[0-9a-fA-F]{40}|[0-9a-fA-F]{64}|[0-9a-fA-F]{96}|[0-9a-fA-F]{128}")
_LICENSES = LicenseFactory()
_HASHES = HashTypeFactory()
_RUN_NAMESPACE = uuid.UUID("6f1c3c5e-8d53-4a0e-9a53-2f9b1d0c7a11")  # fixed: serial numbers must be stable


def _props(pairs: Iterable[tuple[str, str | None]]) -> list[Property]:
    return [Property(name=name, value=value) for name, value in pairs if value is not None]


def _license(value: str | None) -> list[License]:
    """SPDX id, then SPDX expression, then a named license (the lib's factory order). A free-text name we
    translated to SPDX is marked *concluded*; what the package said itself is *declared*."""
    if not value or not value.strip():
        return []
    value = value.strip()
    if (known := spdx_id(value)) is not None:  # an SPDX id in any case, deprecated spellings modernised
        return [_LICENSES.make_with_id(known, acknowledgement=LicenseAcknowledgement.DECLARED)]
    mapped = text_to_spdx(value)
    if mapped is not None and mapped != value:
        return [_LICENSES.make_from_string(mapped, license_acknowledgement=LicenseAcknowledgement.CONCLUDED)]
    return [_LICENSES.make_from_string(value, license_acknowledgement=LicenseAcknowledgement.DECLARED)]


def _hashes(values: Sequence[str]) -> list[HashType]:
    """'sha256:<hex>' (any alg the lib knows; a bare 64-hex string is sha256). Unknown or malformed ones are
    dropped rather than making the SBOM schema-invalid."""
    out: list[HashType] = []
    for value in values:
        alg, sep, digest = value.strip().partition(":")
        if not sep:
            alg, digest = "sha256", alg
        if not _HEX.fullmatch(digest):
            continue
        try:
            out.append(_HASHES.from_composite_str(f"{alg}:{digest.lower()}"))
        except (UnknownHashTypeException, AttributeError):
            continue
    return out


def _purl(value: str) -> PackageURL | None:
    try:
        return PackageURL.from_string(value) if value else None
    except ValueError:
        return None


def _component(c: Component) -> CdxComponent:
    purl = _purl(c.purl)
    return CdxComponent(
        type=ComponentType.LIBRARY,
        name=c.name,
        version=c.version,
        purl=purl,
        bom_ref=purl.to_string() if purl else f"{c.name}@{c.version}",
        hashes=_hashes(c.hashes),
        licenses=_license(c.license),
        properties=_props([("cloche:provenance", c.provenance or None)]),
    )


def build_sbom(
    *,
    sandbox_id: str,
    run_id: str,
    entry: str | None,
    argv: list[str],
    toolchain: Mapping[str, str],
    components: Sequence[Component],
    environment_key: str | None,
    timestamp: datetime,
) -> dict[str, Any]:
    """The CycloneDX 1.6 JSON document (as a dict) for one run and the components it ran with."""
    if timestamp.tzinfo is None:
        timestamp = timestamp.replace(tzinfo=UTC)
    run = CdxComponent(
        type=ComponentType.APPLICATION,
        name=f"cloche-run:{run_id}",
        bom_ref=f"cloche-run:{run_id}",
        properties=_props(
            [
                ("cloche:sandbox_id", sandbox_id),
                ("cloche:run_id", run_id),
                ("cloche:entry", entry),
                ("cloche:argv", json.dumps(argv)),
            ]
        ),
    )
    cloche_tool = CdxComponent(type=ComponentType.APPLICATION, name="cloche", version=cloche.__version__)
    metadata = BomMetaData(
        timestamp=timestamp.astimezone(UTC),
        component=run,
        tools=ToolRepository(components=[cloche_tool, this_component()]),
        properties=_props(
            [
                *((f"cloche:toolchain:{k}", v) for k, v in sorted(toolchain.items())),
                ("cloche:environment", environment_key),
            ]
        ),
    )
    libraries = [_component(c) for c in components]
    bom = Bom(
        serial_number=uuid.uuid5(_RUN_NAMESPACE, f"{sandbox_id}/{run_id}"),
        metadata=metadata,
        components=libraries,
    )
    # Without this the lib warns that the root has no dependencies (and the graph would say nothing).
    bom.register_dependency(run, libraries)
    result: dict[str, Any] = json.loads(JsonV1Dot6(bom).output_as_string())
    return result


@functools.cache
def _validator() -> JsonStrictValidator:
    # Compiling the schema takes a while; one validator serves every call.
    from cyclonedx.validation.json import JsonStrictValidator

    return JsonStrictValidator(SchemaVersion.V1_6)


def validate_sbom(sbom_json: str | Mapping[str, Any]) -> None:
    """Raise ValueError unless ``sbom_json`` (text, or a dict from ``build_sbom``) is valid CycloneDX 1.6
    under the strict schema (no unknown properties)."""
    text = sbom_json if isinstance(sbom_json, str) else json.dumps(sbom_json)
    error = _validator().validate_str(text)
    if error is not None:
        data = error.data
        where = "/".join(str(p) for p in getattr(data, "absolute_path", ()))
        message = getattr(data, "message", str(data))
        raise ValueError(f"invalid CycloneDX 1.6 SBOM at /{where}: {message}")
