"""EchoTune MCP: a Model Context Protocol server for co-creating music."""

from ._quiet_imports import install as _install_quiet_imports

__version__ = "0.1.0"

_install_quiet_imports()  # nothing we import may print on stdout, the stdio server's JSON-RPC channel
