"""Settings of ``echotune-mcp auth-server``, read through the config helpers (``ECHOTUNE_AUTH_SERVER_*``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ...config import Settings, _env, _env_bool, _env_int, is_loopback

SCOPES = ("echotune:read", "echotune:write", "echotune:providers")
DEFAULT_SCOPE = "echotune:read"
DEFAULT_PORT = 8780


def check_resource_uri(uri: str) -> str | None:
    """Why ``uri`` cannot be an RFC 8707 resource indicator (absolute https URL, or http on loopback; no
    fragment), or None when it can."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return "it is not a URL"
    if parts.fragment:
        return "it has a fragment"
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname):
        return None
    return "it must be an absolute https URL (http only on a loopback address)"


@dataclass(frozen=True)
class AuthServerSettings:
    state_dir: Path                       # <ECHOTUNE_DATA_DIR>/auth-server: the SQLite state file lives here
    host: str = "127.0.0.1"               # ECHOTUNE_AUTH_SERVER_HOST
    port: int = DEFAULT_PORT              # ECHOTUNE_AUTH_SERVER_PORT
    issuer: str = ""                      # ECHOTUNE_AUTH_SERVER_ISSUER (default http://HOST:PORT on loopback)
    access_token_ttl_s: int = 900         # ECHOTUNE_AUTH_SERVER_ACCESS_TOKEN_TTL
    refresh_token_ttl_s: int = 30 * 86400  # ECHOTUNE_AUTH_SERVER_REFRESH_TOKEN_TTL
    resources: tuple[str, ...] = ()       # ECHOTUNE_AUTH_SERVER_RESOURCES: the MCP servers tokens may be for
    dynamic_registration: bool = False    # ECHOTUNE_AUTH_SERVER_DYNAMIC_REGISTRATION
    loopback_client_ids: bool = False     # ECHOTUNE_AUTH_SERVER_LOOPBACK_CLIENT_IDS: http://127.0.0.1 CIMD URLs
    login_max_failures: int = 5           # ECHOTUNE_AUTH_SERVER_LOGIN_MAX_FAILURES per user + client address
    login_window_s: int = 900             # ECHOTUNE_AUTH_SERVER_LOGIN_WINDOW
    code_ttl_s: int = 60
    login_ttl_s: int = 600
    cimd_cache_s: int = 300
    cimd_timeout_s: float = 5.0
    secure_cookies: bool = field(default=True)

    @classmethod
    def from_env(cls, *, data_dir: str | None = None, host: str | None = None, port: int | None = None,
                 issuer: str | None = None) -> AuthServerSettings:
        base = Path(data_dir).expanduser() if data_dir else Settings.from_env().data_dir
        host = host or _env("AUTH_SERVER_HOST", "127.0.0.1") or "127.0.0.1"
        port = port if port is not None else _env_int("AUTH_SERVER_PORT", DEFAULT_PORT)
        issuer = (issuer or _env("AUTH_SERVER_ISSUER") or "").rstrip("/")
        if not issuer:
            if not is_loopback(host):
                raise ValueError("ECHOTUNE_AUTH_SERVER_ISSUER (the public https URL of this server) is required "
                                 f"when binding {host}")
            issuer = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
        settings = cls(
            state_dir=base / "auth-server", host=host, port=port, issuer=issuer,
            access_token_ttl_s=_env_int("AUTH_SERVER_ACCESS_TOKEN_TTL", 900),
            refresh_token_ttl_s=_env_int("AUTH_SERVER_REFRESH_TOKEN_TTL", 30 * 86400),
            resources=tuple((_env("AUTH_SERVER_RESOURCES") or "").replace(",", " ").split()),
            dynamic_registration=_env_bool("AUTH_SERVER_DYNAMIC_REGISTRATION", False),
            loopback_client_ids=_env_bool("AUTH_SERVER_LOOPBACK_CLIENT_IDS", False),
            login_max_failures=_env_int("AUTH_SERVER_LOGIN_MAX_FAILURES", 5),
            login_window_s=_env_int("AUTH_SERVER_LOGIN_WINDOW", 900),
            secure_cookies=urlsplit(issuer).scheme == "https",
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        parts = urlsplit(self.issuer)
        if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname)):
            raise ValueError(f"ECHOTUNE_AUTH_SERVER_ISSUER must be an https URL (http only on loopback), got "
                             f"{self.issuer!r}")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"ECHOTUNE_AUTH_SERVER_ISSUER must be an origin without a path, got {self.issuer!r}")
        if not 60 <= self.access_token_ttl_s <= 86400:
            raise ValueError("ECHOTUNE_AUTH_SERVER_ACCESS_TOKEN_TTL must be 60..86400 seconds")
        if not 300 <= self.refresh_token_ttl_s <= 365 * 86400:
            raise ValueError("ECHOTUNE_AUTH_SERVER_REFRESH_TOKEN_TTL must be 300..31536000 seconds")
        if not 1 <= self.login_max_failures <= 100:
            raise ValueError("ECHOTUNE_AUTH_SERVER_LOGIN_MAX_FAILURES must be 1..100")
        if not 10 <= self.login_window_s <= 86400:
            raise ValueError("ECHOTUNE_AUTH_SERVER_LOGIN_WINDOW must be 10..86400 seconds")
        for resource in self.resources:
            if (why := check_resource_uri(resource)) is not None:
                raise ValueError(f"ECHOTUNE_AUTH_SERVER_RESOURCES: {resource!r} cannot be a resource: {why}")
