"""cloche: sandboxes for AI-generated code whose dependencies install once and persist."""

__version__ = "0.1.0"

from cloche.sdk.client import Client, ClocheAPIError

__all__ = ["Client", "ClocheAPIError", "__version__"]
