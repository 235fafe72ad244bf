"""Toolsets: one module per group of tools, enabled by ``--toolsets`` and filtered by ``--read-only``."""
