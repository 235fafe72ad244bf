"""EchoTune MCP: a Model Context Protocol server for co-creating music."""

__version__ = "0.1.0"
