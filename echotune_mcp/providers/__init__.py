"""Music providers: Spotify and YouTube Music adapters, OAuth 2.1, encrypted tokens, matching.

``base`` is the seam (``MusicProvider``, ``Track``, ``Playlist``); ``hub`` wires credentials to
adapters for one App; the toolset ``toolsets/curation.py`` is the only caller from MCP.
"""

from .base import PROVIDERS, MusicProvider, Playlist, ProviderError, Track

__all__ = ["PROVIDERS", "MusicProvider", "Playlist", "ProviderError", "Track"]
