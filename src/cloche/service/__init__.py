"""Use cases: sandboxes, files, exec, runs. The API and the SDK-facing faces call only these."""
