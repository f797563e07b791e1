"""Python SDK: ``from cloche import Client``."""
