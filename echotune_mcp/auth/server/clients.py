"""OAuth clients: Client ID Metadata Documents (an https client_id whose JSON document we fetch) and, when the
operator enables it, clients registered dynamically (RFC 7591). Only public clients (``none``): PKCE S256 is
what binds a code to the client that asked for it.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from authlib.oauth2.rfc6749 import ClientMixin
from authlib.oauth2.rfc6749.util import list_to_scope, scope_to_list

from ...config import is_loopback
from .settings import DEFAULT_SCOPE, SCOPES, AuthServerSettings
from .store import Store

MAX_DOCUMENT_BYTES = 64 * 1024
MAX_REDIRECT_URIS = 20
GRANT_TYPES = ("authorization_code", "refresh_token")


class ClientRefused(ValueError):
    """A client_id or its metadata that cannot be used, with a reason a developer can act on."""


@dataclass(frozen=True)
class Client(ClientMixin):
    client_id: str
    client_name: str
    redirect_uris: tuple[str, ...]
    grant_types: tuple[str, ...]
    scope: str | None

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        allowed = set(scope_to_list(self.scope)) & set(SCOPES) if self.scope else set(SCOPES)
        if not scope:
            return DEFAULT_SCOPE if DEFAULT_SCOPE in allowed else None
        granted = [s for s in scope_to_list(scope) if s in allowed]
        return list_to_scope(granted) if granted else None

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        if redirect_uri in self.redirect_uris:
            return True
        # RFC 8252 7.3: a native app's loopback redirect may use any port; everything else must match exactly.
        asked = urlsplit(redirect_uri)
        if asked.scheme != "http" or asked.hostname not in ("127.0.0.1", "::1"):
            return False
        for registered in self.redirect_uris:
            reg = urlsplit(registered)
            if (reg.scheme, reg.hostname, reg.path, reg.query) == (asked.scheme, asked.hostname, asked.path, asked.query):
                return True
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        return False  # public clients only

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "none"

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


def _check_redirect_uri(uri: object) -> str:
    if not isinstance(uri, str) or not 1 <= len(uri) <= 2000:
        raise ClientRefused("every redirect_uris entry must be a URL string of at most 2000 characters")
    parts = urlsplit(uri)
    if parts.fragment:
        raise ClientRefused(f"redirect URI {uri!r} has a fragment")
    if parts.scheme == "https" and parts.hostname:
        return uri
    if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname):
        return uri
    if "." in parts.scheme and parts.scheme not in ("javascript", "data") and not parts.netloc:
        return uri  # RFC 8252 7.1: a private-use (reverse domain) scheme of a native app
    raise ClientRefused(f"redirect URI {uri!r} must be https, http on a loopback address, or a reverse-domain "
                        "private-use scheme")


def client_from_metadata(client_id: str, doc: dict) -> Client:
    """Validate client metadata (RFC 7591 names) into a public Client; refuse what we do not support."""
    uris = doc.get("redirect_uris")
    if not isinstance(uris, list) or not 1 <= len(uris) <= MAX_REDIRECT_URIS:
        raise ClientRefused(f"redirect_uris must be a list of 1-{MAX_REDIRECT_URIS} URLs")
    method = doc.get("token_endpoint_auth_method", "none")
    if method != "none" or "client_secret" in doc:
        raise ClientRefused("only public clients are supported: token_endpoint_auth_method must be 'none' and no "
                            "client_secret (PKCE S256 protects the code)")
    grants = doc.get("grant_types", ["authorization_code"])
    if not isinstance(grants, list) or not set(grants) <= set(GRANT_TYPES) or "authorization_code" not in grants:
        raise ClientRefused(f"grant_types must include authorization_code and be among {list(GRANT_TYPES)}")
    if doc.get("response_types", ["code"]) != ["code"]:
        raise ClientRefused("response_types must be ['code']")
    name = doc.get("client_name", client_id)
    if not isinstance(name, str) or not 1 <= len(name) <= 200:
        raise ClientRefused("client_name must be a string of 1-200 characters")
    scope = doc.get("scope")
    if scope is not None and (not isinstance(scope, str) or len(scope) > 1000):
        raise ClientRefused("scope must be a space-separated string")
    return Client(client_id=client_id, client_name=name, redirect_uris=tuple(_check_redirect_uri(u) for u in uris),
                  grant_types=tuple(grants), scope=scope)


def _check_client_id_url(client_id: str, settings: AuthServerSettings) -> None:
    parts = urlsplit(client_id)
    if parts.username or parts.password or parts.fragment or parts.path in ("", "/"):
        raise ClientRefused("a client_id URL has a path and no credentials or fragment")
    host = parts.hostname or ""
    if parts.scheme == "http" and is_loopback(host) and settings.loopback_client_ids:
        return
    if parts.scheme != "https":
        raise ClientRefused("a client_id must be an https URL of a Client ID Metadata Document")
    # No fetching from this server's own network: every address the name resolves to must be public.
    try:
        infos = socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as exc:
        raise ClientRefused(f"cannot resolve the client_id host {host!r}") from exc
    for info in infos:
        if not ipaddress.ip_address(info[4][0].split("%")[0]).is_global:
            raise ClientRefused(f"the client_id host {host!r} resolves to a non-public address")


def fetch_metadata_document(client_id: str, settings: AuthServerSettings) -> dict:
    """GET the document with bounded time and size, no redirects; it must be JSON naming this client_id."""
    _check_client_id_url(client_id, settings)
    deadline = time.monotonic() + settings.cimd_timeout_s
    body = bytearray()
    try:
        with httpx.Client(timeout=httpx.Timeout(settings.cimd_timeout_s), follow_redirects=False,
                          trust_env=False) as http, \
                http.stream("GET", client_id, headers={"Accept": "application/json"}) as resp:
            if resp.status_code != 200:
                raise ClientRefused(f"fetching the client metadata document answered HTTP {resp.status_code}")
            for chunk in resp.iter_bytes():
                body.extend(chunk)
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise ClientRefused(f"the client metadata document is larger than {MAX_DOCUMENT_BYTES} bytes")
                if time.monotonic() > deadline:
                    raise ClientRefused("fetching the client metadata document took too long")
    except httpx.HTTPError as exc:
        raise ClientRefused(f"cannot fetch the client metadata document ({type(exc).__name__})") from exc
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise ClientRefused("the client metadata document is not JSON") from exc
    if not isinstance(doc, dict) or doc.get("client_id") != client_id:
        raise ClientRefused("the client metadata document's client_id must equal the URL it was fetched from")
    return doc


def load_client(store: Store, settings: AuthServerSettings, client_id: str) -> Client:
    """The client for ``client_id``: a registered one, a cached metadata document, or a freshly fetched one."""
    if not client_id or len(client_id) > 2000:
        raise ClientRefused("client_id is missing or longer than 2000 characters")
    row = store.get_client(client_id)
    if row is not None and (row["kind"] == "dynamic" or time.time() - row["fetched_at"] < settings.cimd_cache_s):
        return client_from_metadata(client_id, json.loads(row["metadata"]))
    if "://" not in client_id:
        raise ClientRefused("unknown client_id (use the https URL of your Client ID Metadata Document)")
    doc = fetch_metadata_document(client_id, settings)
    client = client_from_metadata(client_id, doc)
    store.put_client(client_id, "cimd", doc)
    return client
