"""Software bills of materials for runs: CycloneDX 1.6 documents, license normalisation, component diffs."""

from cloche.sbom.cyclonedx import build_sbom, validate_sbom
from cloche.sbom.diff import diff_components
from cloche.sbom.licenses import maven_license_to_spdx, normalize_license

__all__ = ["build_sbom", "diff_components", "maven_license_to_spdx", "normalize_license", "validate_sbom"]
