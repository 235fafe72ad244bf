"""Fixtures for tests that talk OAuth to the loopback authlib server: a free port, the server, a client config.

Imported by the OAuth tests and the hostile secrets tests, so both run against the same setup.
"""

from __future__ import annotations

import pytest

from echotune_mcp.providers.oauth import OAuthClientConfig
from tests.conftest import free_port

from .authserver import CLIENT_ID, TestAuthServer


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def auth_server(port):
    srv = TestAuthServer([f"http://127.0.0.1:{port}/callback"])
    yield srv
    srv.close()


@pytest.fixture
def cfg(auth_server, port) -> OAuthClientConfig:
    return OAuthClientConfig(provider="spotify", client_id=CLIENT_ID, authorize_url=f"{auth_server.base}/authorize",
                             token_url=f"{auth_server.base}/api/token", revoke_url=f"{auth_server.base}/revoke",
                             redirect_port=port, scopes=("playlist-read-private",))
