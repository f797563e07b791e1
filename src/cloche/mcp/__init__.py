"""``cloche mcp``: cloche sandboxes as MCP tools (``cloche.mcp.server``).

This package shares its last name with the MCP SDK (``mcp``); every import here is absolute, so ``import mcp``
always means the SDK.
"""
