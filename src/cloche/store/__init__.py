"""Durable state: metadata, workspaces, environments, logs."""
