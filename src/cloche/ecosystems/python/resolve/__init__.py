"""Import name -> PyPI project, as a chain of layers (see ``chain.Resolver``)."""

from cloche.ecosystems.python.resolve.answer import Refusal, Resolution
from cloche.ecosystems.python.resolve.chain import Resolver

__all__ = ["Refusal", "Resolution", "Resolver"]
