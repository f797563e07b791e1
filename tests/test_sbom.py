"""SBOMs: CycloneDX 1.6 documents that validate, license normalisation, component diffs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

import cloche
from cloche.ecosystems.base import Component
from cloche.sbom import build_sbom, diff_components, maven_license_to_spdx, normalize_license, validate_sbom
from cloche.sbom.licenses import classifier_to_spdx

REQUESTS_SHA = "70761cfe03c773ceb22aa2f671b4757976145175cdfca038c02654d061d6dcc6"
GPL3_PLUS = "License :: OSI Approved :: GNU General Public License v3 or later (GPLv3+)"

SIX = Component("six", "1.16.0", "pkg:pypi/six@1.16.0", "MIT", (), "lock:requirements.txt")
REQUESTS = Component(
    "requests", "2.32.3", "pkg:pypi/requests@2.32.3", "Apache-2.0", (f"sha256:{REQUESTS_SHA}",), "lock"
)
GPL_PKG = Component(
    "gplthing", "0.3", "pkg:pypi/gplthing@0.3", normalize_license(None, "UNKNOWN", [GPL3_PLUS]), (), "lock"
)


def _sbom(components: list[Component], **over: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "sandbox_id": "sb_123",
        "run_id": "run_456",
        "entry": "main.py",
        "argv": ["python", "main.py", "--flag"],
        "toolchain": {"python": "3.11.2"},
        "components": components,
        "environment_key": "env_abc",
        "timestamp": datetime(2025, 3, 1, 12, 0, tzinfo=UTC),
    }
    args.update(over)
    return build_sbom(**args)


def _props(node: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["value"] for p in node.get("properties", [])}


def test_sbom_validates_and_describes_the_run() -> None:
    sbom = _sbom([SIX, REQUESTS, GPL_PKG])
    validate_sbom(json.dumps(sbom))
    validate_sbom(sbom)
    assert sbom["bomFormat"] == "CycloneDX" and sbom["specVersion"] == "1.6"

    meta = sbom["metadata"]
    assert meta["timestamp"].startswith("2025-03-01T12:00:00")
    assert meta["component"]["type"] == "application" and meta["component"]["name"] == "cloche-run:run_456"
    run_props = _props(meta["component"])
    assert run_props["cloche:sandbox_id"] == "sb_123" and run_props["cloche:entry"] == "main.py"
    assert json.loads(run_props["cloche:argv"]) == ["python", "main.py", "--flag"]
    assert _props(meta) == {"cloche:toolchain:python": "3.11.2", "cloche:environment": "env_abc"}
    tools = {t["name"]: t.get("version") for t in meta["tools"]["components"]}
    assert tools["cloche"] == cloche.__version__

    by_name = {c["name"]: c for c in sbom["components"]}
    assert set(by_name) == {"six", "requests", "gplthing"}
    assert all(c["type"] == "library" for c in by_name.values())
    assert by_name["six"]["version"] == "1.16.0" and by_name["six"]["purl"] == "pkg:pypi/six@1.16.0"
    assert by_name["requests"]["purl"] == "pkg:pypi/requests@2.32.3"
    assert by_name["six"]["licenses"] == [{"license": {"id": "MIT", "acknowledgement": "declared"}}]
    assert by_name["requests"]["licenses"][0]["license"]["id"] == "Apache-2.0"
    assert by_name["gplthing"]["licenses"][0]["license"]["id"] == "GPL-3.0-or-later"
    assert by_name["requests"]["hashes"] == [{"alg": "SHA-256", "content": REQUESTS_SHA}]
    assert "hashes" not in by_name["six"]
    assert _props(by_name["six"]) == {"cloche:provenance": "lock:requirements.txt"}

    root = next(d for d in sbom["dependencies"] if d["ref"] == "cloche-run:run_456")
    assert sorted(root["dependsOn"]) == sorted(c["bom-ref"] for c in sbom["components"])


def test_empty_sbom_validates() -> None:
    sbom = _sbom([], entry=None, environment_key=None, toolchain={})
    validate_sbom(sbom)
    assert "components" not in sbom or sbom["components"] == []
    assert "cloche:entry" not in _props(sbom["metadata"]["component"])


def test_same_run_gives_the_same_document() -> None:
    assert _sbom([SIX, REQUESTS]) == _sbom([REQUESTS, SIX])
    assert _sbom([SIX])["serialNumber"] != _sbom([SIX], run_id="other")["serialNumber"]


def test_license_forms_and_odd_inputs_stay_valid() -> None:
    odd = [
        Component("a", "1", "pkg:pypi/a@1", "MIT OR Apache-2.0"),
        Component("b", "1", "pkg:pypi/b@1", "Apache Software License"),  # free text we translate
        Component("c", "1", "pkg:pypi/c@1", "Some Custom License"),
        Component("d", "1", "pkg:npm/%40scope/d@1", None, ("sha256:not-hex", "crc32:abcd", "sha512:" + "a" * 128)),
        Component("e", "1", "not a purl"),
        Component("f", "1", "pkg:pypi/f@1", "gpl-2.0+"),
    ]
    sbom = _sbom(odd, timestamp=datetime(2025, 3, 1, 12, 0))  # naive: taken as UTC
    validate_sbom(sbom)
    by_name = {c["name"]: c for c in sbom["components"]}
    assert by_name["a"]["licenses"] == [{"expression": "MIT OR Apache-2.0", "acknowledgement": "declared"}]
    assert by_name["b"]["licenses"][0]["license"] == {"id": "Apache-2.0", "acknowledgement": "concluded"}
    assert by_name["c"]["licenses"][0]["license"]["name"] == "Some Custom License"
    assert by_name["d"]["hashes"] == [{"alg": "SHA-512", "content": "a" * 128}]
    assert "purl" not in by_name["e"]
    assert by_name["f"]["licenses"][0]["license"] == {"id": "GPL-2.0-or-later", "acknowledgement": "declared"}


def test_validate_rejects_a_broken_sbom() -> None:
    sbom = _sbom([SIX])
    sbom["components"][0]["type"] = "spaceship"
    with pytest.raises(ValueError, match="components/0/type"):
        validate_sbom(json.dumps(sbom))
    with pytest.raises(ValueError):
        validate_sbom({"bomFormat": "CycloneDX", "specVersion": "1.6", "unknown": 1})


def test_diff_reports_versions_licenses_added_removed() -> None:
    old: list[Component | dict[str, Any]] = [
        Component("six", "1.15.0", "pkg:pypi/six@1.15.0", "MIT"),
        REQUESTS.to_dict(),
        Component("idna", "3.6", "pkg:pypi/idna@3.6", "BSD-3-Clause"),
        Component("Typing_Extensions", "4.9.0", "pkg:pypi/typing-extensions@4.9.0", "PSF-2.0"),
    ]
    new = [
        SIX,
        Component("requests", "2.32.3", "pkg:pypi/requests@2.32.3", "MIT"),
        Component("typing-extensions", "4.9.0", "pkg:pypi/typing_extensions@4.9.0", "PSF-2.0"),
        Component("left-pad", "1.3.0", "pkg:npm/left-pad@1.3.0", "WTFPL"),
    ]
    d = diff_components(old, new)
    assert d["changed"] == [{"ecosystem": "pypi", "name": "six", "from_version": "1.15.0", "to_version": "1.16.0"}]
    assert d["license_changed"] == [{"ecosystem": "pypi", "name": "requests", "from": "Apache-2.0", "to": "MIT"}]
    assert [(a["ecosystem"], a["name"], a["version"]) for a in d["added"]] == [("npm", "left-pad", "1.3.0")]
    assert [(r["name"], r["version"]) for r in d["removed"]] == [("idna", "3.6")]
    assert diff_components(new, new) == {"added": [], "removed": [], "changed": [], "license_changed": []}


def test_same_name_in_two_ecosystems_are_different_packages() -> None:
    d = diff_components([Component("debug", "1", "pkg:pypi/debug@1")], [Component("debug", "1", "pkg:npm/debug@1")])
    assert [a["ecosystem"] for a in d["added"]] == ["npm"] and [r["ecosystem"] for r in d["removed"]] == ["pypi"]


@pytest.mark.parametrize(
    ("classifier", "spdx"),
    [
        ("License :: OSI Approved :: MIT License", "MIT"),
        ("License :: OSI Approved :: BSD License", "BSD-3-Clause"),
        ("License :: OSI Approved :: Apache Software License", "Apache-2.0"),
        ("License :: OSI Approved :: GNU General Public License v2 (GPLv2)", "GPL-2.0-only"),
        ("License :: OSI Approved :: GNU General Public License v2 or later (GPLv2+)", "GPL-2.0-or-later"),
        ("License :: OSI Approved :: GNU General Public License v3 (GPLv3)", "GPL-3.0-only"),
        (GPL3_PLUS, "GPL-3.0-or-later"),
        ("License :: OSI Approved :: GNU Lesser General Public License v3 (LGPLv3)", "LGPL-3.0-only"),
        ("License :: OSI Approved :: GNU Lesser General Public License v2 or later (LGPLv2+)", "LGPL-2.0-or-later"),
        ("License :: OSI Approved :: Mozilla Public License 2.0 (MPL 2.0)", "MPL-2.0"),
        ("License :: OSI Approved :: ISC License (ISCL)", "ISC"),
        ("License :: OSI Approved :: Python Software Foundation License", "PSF-2.0"),
        ("License :: OSI Approved :: The Unlicense (Unlicense)", "Unlicense"),
        ("License :: OSI Approved :: zlib/libpng License", "Zlib"),
        ("License :: OSI Approved :: Mulan Permissive Software License v2 (MulanPSL-2.0)", "MulanPSL-2.0"),
        ("License :: CC0 1.0 Universal (CC0 1.0) Public Domain Dedication", "CC0-1.0"),
        ("License :: OSI Approved :: GNU General Public License (GPL)", None),  # no version: no guess
        ("License :: Other/Proprietary License", None),
        ("License :: OSI Approved", None),
        ("Programming Language :: Python :: 3", None),
    ],
)
def test_classifier_mapping(classifier: str, spdx: str | None) -> None:
    assert classifier_to_spdx(classifier) == spdx


@pytest.mark.parametrize(
    ("expression", "text", "classifiers", "expected"),
    [
        ("MIT", "Apache 2.0", [GPL3_PLUS], "MIT"),  # License-Expression wins
        ("apache-2.0", None, [], "Apache-2.0"),  # case fixed
        ("MIT OR Apache-2.0", None, [], "MIT OR Apache-2.0"),
        (None, "MIT License", [GPL3_PLUS], "MIT"),  # a short, recognisable License field beats classifiers
        (None, "Apache 2.0", [], "Apache-2.0"),
        (None, "Apache Software License", [], "Apache-2.0"),
        (None, "BSD", [], "BSD-3-Clause"),
        (None, "GPL-2.0+", [], "GPL-2.0-or-later"),  # deprecated SPDX id, modernised
        (None, "Copyright (c) 2010 Someone\n\nPermission is hereby granted...", [GPL3_PLUS], "GPL-3.0-or-later"),
        (None, "UNKNOWN", ["License :: OSI Approved :: MIT License"], "MIT"),
        (
            None,
            None,
            ["License :: OSI Approved :: MIT License", "License :: OSI Approved :: Apache Software License"],
            "Apache-2.0 OR MIT",
        ),
        (None, "Dual Custom", [], "Dual Custom"),  # unrecognised but short: kept verbatim
        (None, "x" * 500, [], None),  # license text, not a name
        (None, None, [], None),
    ],
)
def test_normalize_license(
    expression: str | None, text: str | None, classifiers: list[str], expected: str | None
) -> None:
    assert normalize_license(expression, text, classifiers) == expected


@pytest.mark.parametrize(
    ("name", "url", "expected"),
    [
        ("The Apache Software License, Version 2.0", "http://www.apache.org/licenses/LICENSE-2.0.txt", "Apache-2.0"),
        ("Apache License", "https://www.apache.org/licenses/LICENSE-2.0", "Apache-2.0"),
        ("The MIT License", None, "MIT"),
        ("MIT", "https://opensource.org/licenses/MIT", "MIT"),
        ("Eclipse Public License - v 1.0", "http://www.eclipse.org/legal/epl-v10.html", "EPL-1.0"),
        ("EPL 2.0", None, "EPL-2.0"),
        ("New BSD License", None, "BSD-3-Clause"),
        ("GPL2 w/ CPE", None, "GPL-2.0-only WITH Classpath-exception-2.0"),
        ("Bouncy Castle Licence", "https://www.bouncycastle.org/licence.html", None),
    ],
)
def test_maven_license_to_spdx(name: str, url: str | None, expected: str | None) -> None:
    assert maven_license_to_spdx(name, url) == expected
