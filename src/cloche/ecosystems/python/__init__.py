"""Python: entry files, and (growing) dependency detection and installation."""
