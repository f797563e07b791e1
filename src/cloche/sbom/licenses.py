"""License strings as packages declare them -> SPDX ids and expressions.

Sources, in the order ``normalize_license`` trusts them: a Python ``License-Expression`` (PEP 639, meant to be
SPDX already), a short ``License`` field ("MIT License", "Apache 2.0"), trove classifiers. Maven POMs declare a
name and a URL (``maven_license_to_spdx``). Anything not recognised is left for the caller to keep verbatim: a
wrong SPDX id in an SBOM is worse than an honest free-text name.

Guesses worth knowing: a bare "BSD" (classifier or text) becomes BSD-3-Clause, the most common variant on PyPI;
"Apache Software License" without a version becomes Apache-2.0; GPL/LGPL/AGPL with a version but no "+" becomes
``-only``. Several license classifiers on one package are joined with OR (dual licensing is why they are listed).
"""

from __future__ import annotations

import re

from cyclonedx.spdx import fixup_id, is_expression

_TROVE_PREFIX = "License :: "

# Exact trove classifiers -> SPDX id. Classifiers without a version or otherwise ambiguous ("GNU General Public
# License (GPL)", "Public Domain", "Other/Proprietary License") are deliberately absent.
TROVE_TO_SPDX: dict[str, str] = {
    "OSI Approved :: MIT License": "MIT",
    "OSI Approved :: MIT No Attribution License (MIT-0)": "MIT-0",
    "OSI Approved :: BSD License": "BSD-3-Clause",
    "OSI Approved :: Zero-Clause BSD (0BSD)": "0BSD",
    "OSI Approved :: Apache Software License": "Apache-2.0",
    "OSI Approved :: ISC License (ISCL)": "ISC",
    "OSI Approved :: Python Software Foundation License": "PSF-2.0",
    "OSI Approved :: Python License (CNRI Python License)": "CNRI-Python",
    "OSI Approved :: The Unlicense (Unlicense)": "Unlicense",
    "OSI Approved :: zlib/libpng License": "Zlib",
    "OSI Approved :: Mozilla Public License 1.0 (MPL)": "MPL-1.0",
    "OSI Approved :: Mozilla Public License 1.1 (MPL 1.1)": "MPL-1.1",
    "OSI Approved :: Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    "OSI Approved :: GNU General Public License v2 (GPLv2)": "GPL-2.0-only",
    "OSI Approved :: GNU General Public License v2 or later (GPLv2+)": "GPL-2.0-or-later",
    "OSI Approved :: GNU General Public License v3 (GPLv3)": "GPL-3.0-only",
    "OSI Approved :: GNU General Public License v3 or later (GPLv3+)": "GPL-3.0-or-later",
    "OSI Approved :: GNU Lesser General Public License v2 (LGPLv2)": "LGPL-2.0-only",
    "OSI Approved :: GNU Lesser General Public License v2 or later (LGPLv2+)": "LGPL-2.0-or-later",
    "OSI Approved :: GNU Lesser General Public License v3 (LGPLv3)": "LGPL-3.0-only",
    "OSI Approved :: GNU Lesser General Public License v3 or later (LGPLv3+)": "LGPL-3.0-or-later",
    "OSI Approved :: GNU Affero General Public License v3": "AGPL-3.0-only",
    "OSI Approved :: GNU Affero General Public License v3 or later (AGPLv3+)": "AGPL-3.0-or-later",
    "OSI Approved :: Eclipse Public License 1.0 (EPL-1.0)": "EPL-1.0",
    "OSI Approved :: Eclipse Public License 2.0 (EPL-2.0)": "EPL-2.0",
    "OSI Approved :: European Union Public Licence 1.0 (EUPL 1.0)": "EUPL-1.0",
    "OSI Approved :: European Union Public Licence 1.1 (EUPL 1.1)": "EUPL-1.1",
    "OSI Approved :: European Union Public Licence 1.2 (EUPL 1.2)": "EUPL-1.2",
    "OSI Approved :: Boost Software License 1.0 (BSL-1.0)": "BSL-1.0",
    "OSI Approved :: Common Development and Distribution License 1.0 (CDDL-1.0)": "CDDL-1.0",
    "OSI Approved :: Historical Permission Notice and Disclaimer (HPND)": "HPND",
    "OSI Approved :: University of Illinois/NCSA Open Source License": "NCSA",
    "OSI Approved :: Universal Permissive License (UPL)": "UPL-1.0",
    "OSI Approved :: PostgreSQL License": "PostgreSQL",
    "OSI Approved :: SIL Open Font License 1.1 (OFL-1.1)": "OFL-1.1",
    "OSI Approved :: Open Software License 3.0 (OSL-3.0)": "OSL-3.0",
    "OSI Approved :: W3C License": "W3C",
    "OSI Approved :: Artistic License": "Artistic-2.0",
    "OSI Approved :: Sleepycat License": "Sleepycat",
    "OSI Approved :: Blue Oak Model License (BlueOak-1.0.0)": "BlueOak-1.0.0",
    "CC0 1.0 Universal (CC0 1.0) Public Domain Dedication": "CC0-1.0",
}

# Free text, keyed by _key(): lower case, punctuation folded to spaces, a leading "the" and the words
# "license"/"licence" dropped ("The Apache License, Version 2.0" -> "apache version 2.0"). SPDX ids themselves
# are recognised separately, case-insensitively.
_TEXT_TO_SPDX: dict[str, str] = {
    "mit": "MIT",
    "mit x11": "MIT",
    "mit mit": "MIT",
    "expat": "MIT",
    "apache": "Apache-2.0",
    "apache 2": "Apache-2.0",
    "apache 2.0": "Apache-2.0",
    "apache v2": "Apache-2.0",
    "apache v2.0": "Apache-2.0",
    "apache version 2.0": "Apache-2.0",
    "apache software": "Apache-2.0",
    "asl 2.0": "Apache-2.0",
    "asf 2.0": "Apache-2.0",
    "bsd": "BSD-3-Clause",
    "new bsd": "BSD-3-Clause",
    "modified bsd": "BSD-3-Clause",
    "revised bsd": "BSD-3-Clause",
    "bsd 3 clause": "BSD-3-Clause",
    "3 clause bsd": "BSD-3-Clause",
    "bsd 2 clause": "BSD-2-Clause",
    "2 clause bsd": "BSD-2-Clause",
    "simplified bsd": "BSD-2-Clause",
    "freebsd": "BSD-2-Clause",
    "isc": "ISC",
    "iscl": "ISC",
    "psf": "PSF-2.0",
    "psfl": "PSF-2.0",
    "python software foundation": "PSF-2.0",
    "mpl 2.0": "MPL-2.0",
    "mpl2": "MPL-2.0",
    "mpl v2": "MPL-2.0",
    "mozilla public 2.0": "MPL-2.0",
    "mozilla public version 2.0": "MPL-2.0",
    "gplv2": "GPL-2.0-only",
    "gpl v2": "GPL-2.0-only",
    "gplv2+": "GPL-2.0-or-later",
    "gplv3": "GPL-3.0-only",
    "gpl v3": "GPL-3.0-only",
    "gplv3+": "GPL-3.0-or-later",
    "lgplv2.1": "LGPL-2.1-only",
    "lgplv2.1+": "LGPL-2.1-or-later",
    "lgplv3": "LGPL-3.0-only",
    "lgplv3+": "LGPL-3.0-or-later",
    "agplv3": "AGPL-3.0-only",
    "agplv3+": "AGPL-3.0-or-later",
    "unlicense": "Unlicense",
    "zlib": "Zlib",
    "zlib/libpng": "Zlib",
    "cc0": "CC0-1.0",
    "cc0 1.0": "CC0-1.0",
    "cc0 1.0 universal": "CC0-1.0",
    "epl 1.0": "EPL-1.0",
    "epl 2.0": "EPL-2.0",
    "eclipse public 1.0": "EPL-1.0",
    "eclipse public v 1.0": "EPL-1.0",
    "eclipse public 2.0": "EPL-2.0",
    "eclipse public v2.0": "EPL-2.0",
    "eclipse public v 2.0": "EPL-2.0",
    "eclipse public version 2.0": "EPL-2.0",
    "cddl 1.0": "CDDL-1.0",
    "cddl 1.1": "CDDL-1.1",
    "universal permissive v1.0": "UPL-1.0",
    "universal permissive version 1.0": "UPL-1.0",
    "gpl2 w/ cpe": "GPL-2.0-only WITH Classpath-exception-2.0",
    "gnu general public version 2 with the classpath exception": "GPL-2.0-only WITH Classpath-exception-2.0",
    "cddl+gpl": "CDDL-1.1 OR GPL-2.0-only WITH Classpath-exception-2.0",
    "cddl + gplv2 with classpath exception": "CDDL-1.1 OR GPL-2.0-only WITH Classpath-exception-2.0",
    "public domain per creative commons cc0": "CC0-1.0",
    "wtfpl": "WTFPL",
}

# Deprecated SPDX ids still common in metadata -> their current spelling.
_DEPRECATED: dict[str, str] = {
    "GPL-2.0": "GPL-2.0-only",
    "GPL-2.0+": "GPL-2.0-or-later",
    "GPL-3.0": "GPL-3.0-only",
    "GPL-3.0+": "GPL-3.0-or-later",
    "LGPL-2.0": "LGPL-2.0-only",
    "LGPL-2.0+": "LGPL-2.0-or-later",
    "LGPL-2.1": "LGPL-2.1-only",
    "LGPL-2.1+": "LGPL-2.1-or-later",
    "LGPL-3.0": "LGPL-3.0-only",
    "LGPL-3.0+": "LGPL-3.0-or-later",
    "AGPL-3.0": "AGPL-3.0-only",
}

# Canonical license URLs (scheme, "www." and trailing punctuation/extension stripped) -> SPDX id.
_URL_TO_SPDX: dict[str, str] = {
    "apache.org/licenses/license-2.0": "Apache-2.0",
    "opensource.org/licenses/apache-2.0": "Apache-2.0",
    "opensource.org/licenses/mit": "MIT",
    "opensource.org/licenses/mit-license": "MIT",
    "opensource.org/licenses/bsd-license": "BSD-3-Clause",
    "opensource.org/licenses/bsd-3-clause": "BSD-3-Clause",
    "opensource.org/licenses/bsd-2-clause": "BSD-2-Clause",
    "eclipse.org/legal/epl-v10": "EPL-1.0",
    "eclipse.org/legal/epl-2.0": "EPL-2.0",
    "eclipse.org/legal/epl-v20": "EPL-2.0",
    "mozilla.org/mpl/2.0": "MPL-2.0",
    "gnu.org/licenses/gpl-2.0": "GPL-2.0-only",
    "gnu.org/licenses/gpl-3.0": "GPL-3.0-only",
    "gnu.org/licenses/lgpl-2.1": "LGPL-2.1-only",
    "gnu.org/licenses/lgpl-3.0": "LGPL-3.0-only",
    "gnu.org/licenses/old-licenses/gpl-2.0": "GPL-2.0-only",
    "gnu.org/licenses/old-licenses/lgpl-2.1": "LGPL-2.1-only",
    "creativecommons.org/publicdomain/zero/1.0": "CC0-1.0",
    "opensource.org/licenses/cddl1": "CDDL-1.0",
    "oss.oracle.com/licenses/upl": "UPL-1.0",
    "unlicense.org": "Unlicense",
}

# Beyond this a License field is license *text*, not a name.
_MAX_SHORT = 120


def _key(text: str) -> str:
    s = re.sub(r"\blicen[cs]e\b", " ", text.lower())
    s = re.sub(r"[\s,\-_()\"']+", " ", s).strip()
    return s.removeprefix("the ").strip()


def spdx_id(value: str) -> str | None:
    """The SPDX id ``value`` names (case-insensitive, deprecated ids modernised), else None."""
    fixed = fixup_id(value.strip())
    if fixed is None:
        return None
    return _DEPRECATED.get(fixed, fixed)


def text_to_spdx(text: str) -> str | None:
    """A short free-text license name or SPDX id/expression -> SPDX, or None if not recognised."""
    text = text.strip()
    if not text or len(text) > _MAX_SHORT or "\n" in text:
        return None
    if found := spdx_id(text):
        return found
    if (mapped := _TEXT_TO_SPDX.get(_key(text))) is not None:
        return mapped
    if is_expression(text):
        return text
    return None


def classifier_to_spdx(classifier: str) -> str | None:
    """One trove classifier ('License :: OSI Approved :: MIT License') -> SPDX id, or None."""
    if not classifier.startswith(_TROVE_PREFIX):
        return None
    rest = classifier[len(_TROVE_PREFIX) :].strip()
    if (found := TROVE_TO_SPDX.get(rest)) is not None:
        return found
    # Newer classifiers end with the SPDX id in parentheses, e.g. "(MulanPSL-2.0)".
    if m := re.search(r"\(([A-Za-z0-9.+-]+)\)$", rest):
        return spdx_id(m.group(1))
    return None


def classifiers_to_spdx(classifiers: list[str]) -> str | None:
    """All license classifiers of a package as one SPDX expression (OR of the recognised ids), or None."""
    ids: list[str] = []
    for c in classifiers:
        found = classifier_to_spdx(c)
        if found is not None and found not in ids:
            ids.append(found)
    return " OR ".join(sorted(ids)) if ids else None


def normalize_license(license_expression: str | None, license_text: str | None, classifiers: list[str]) -> str | None:
    """The best license string for a Python distribution: SPDX where possible, else honest free text.

    Precedence: a valid License-Expression; a short, recognisable License field; license classifiers; then, as
    a last resort, the License field or License-Expression verbatim if short (a name beats nothing). "UNKNOWN"
    and empty values count as absent.
    """
    expr = (license_expression or "").strip()
    text = (license_text or "").strip()
    if text.upper() in ("UNKNOWN", "NONE"):
        text = ""
    if expr:
        if found := spdx_id(expr):
            return found
        if is_expression(expr):
            return expr
    if text and (found := text_to_spdx(text)):
        return found
    if found := classifiers_to_spdx(classifiers):
        return found
    for raw in (expr, text):
        if raw and len(raw) <= _MAX_SHORT and "\n" not in raw:
            return raw
    return None


def _url_key(url: str) -> str:
    s = url.strip().lower()
    s = re.sub(r"^[a-z]+://", "", s)
    s = re.sub(r"^www\.", "", s)
    s = re.sub(r"[?#].*$", "", s).rstrip("/")
    return re.sub(r"\.(txt|html?|php)$", "", s)


def maven_license_to_spdx(name: str, url: str | None) -> str | None:
    """A POM ``<license>`` (name, url) -> SPDX id/expression, or None when neither is recognised.

    The URL wins when known (it usually pins the version, "Apache License" alone does not).
    """
    if url and (found := _URL_TO_SPDX.get(_url_key(url))):
        return found
    return text_to_spdx(name) if name else None


def denied(expression: str, deny: frozenset[str]) -> bool:
    """True when every alternative of an SPDX expression carries a denied id ("MIT OR AGPL-3.0-only" is fine)."""
    if not deny:
        return False
    wanted = {d.lower() for d in deny}
    alternatives = re.split(r"\s+OR\s+", expression.replace("(", " ").replace(")", " "), flags=re.IGNORECASE)
    return all(
        any(token.lower() in wanted for token in re.split(r"\s+(?:AND|WITH)\s+|\s+", alt.strip()) if token)
        for alt in alternatives
    )
