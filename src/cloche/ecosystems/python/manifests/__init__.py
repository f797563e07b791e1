"""Declared Python dependencies: pyproject.toml (PEP 621 or Poetry), requirements.txt and PEP 723.

One reader per format (``pyproject.py``, ``requirements.py``, ``inline.py``) over shared checks
(``checks.py``). Every requirement comes back as a PEP 508 string checked by ``packaging``. Anything that
would install from somewhere other than the official registry (URLs, VCS, local paths, editables, other
indexes) is refused with the file and line, because cloche's installs are registry-only.
"""

from cloche.ecosystems.python.manifests.checks import check_requirement, read_manifest
from cloche.ecosystems.python.manifests.inline import InlineScript, parse_inline
from cloche.ecosystems.python.manifests.pyproject import Pyproject, parse_pyproject, poetry_constraint
from cloche.ecosystems.python.manifests.requirements import RequirementsFile, parse_requirements

__all__ = [
    "InlineScript",
    "Pyproject",
    "RequirementsFile",
    "check_requirement",
    "parse_inline",
    "parse_pyproject",
    "parse_requirements",
    "poetry_constraint",
    "read_manifest",
]
