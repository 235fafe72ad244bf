"""Checks the bearer tokens of the HTTP transport: JWT access tokens against the issuer's keys, or opaque tokens
by RFC 7662 introspection.

A JWT is accepted only when every one of these holds: the header's ``alg`` is RS256 or ES256 (``none``, HS256
and everything else are refused before any key is touched, so a public key can never serve as an HMAC secret);
``typ`` is ``at+jwt`` (RFC 9068) or ``JWT``; the signature verifies with the issuer key named by ``kid`` (of the
key type the algorithm needs); ``iss`` is exactly the configured issuer; ``aud`` contains this server's audience;
``exp`` is in the future and ``nbf`` not, each with 60 s of clock skew; and there is a subject.

The issuer's keys come from its metadata (RFC 8414 ``/.well-known/oauth-authorization-server``, then OpenID
``/.well-known/openid-configuration``) and ``jwks_uri``; they are cached for ``jwks_cache_s``. A token naming a
key we do not have makes one refetch (at most one per ``refetch_interval_s``), which is how key rotation is
picked up without a restart. Every fetch has a bounded timeout and size. When the issuer cannot be reached and no
fresh keys are cached, tokens are refused (fail closed) and one log line says why; the next request after
``refetch_interval_s`` tries again, so the server recovers on its own when the issuer is back.

Refusals return ``None`` (the HTTP layer answers 401 without detail); the reason goes to the server log only.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from mcp.server.auth.provider import TokenVerifier

from .context import VerifiedToken

log = logging.getLogger("echotune_mcp.auth")

ALLOWED_ALGS = {"RS256": "RSA", "ES256": "EC"}  # algorithm -> the key type it must be verified with
ALLOWED_TYP = {"at+jwt", "application/at+jwt", "jwt"}
LEEWAY_S = 60
MAX_DOCUMENT_BYTES = 512 * 1024  # metadata and JWKS documents; anything larger is not one
MAX_TOKEN_CHARS = 16 * 1024


class IssuerUnavailable(Exception):
    """The issuer's metadata, keys or introspection endpoint could not be fetched (or made no sense)."""


@dataclass
class _Keys:
    keyset: KeySet
    fetched_at: float


def _b64json(segment: str) -> Any:
    padded = segment + "=" * (-len(segment) % 4)
    return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))


def metadata_urls(issuer: str) -> list[str]:
    """Where the issuer's metadata may be: RFC 8414 (well-known inserted before the issuer's path), then OIDC."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    base = f"{parts.scheme}://{parts.netloc}"
    return [f"{base}/.well-known/oauth-authorization-server{path}", f"{issuer.rstrip('/')}/.well-known/openid-configuration"]


def _scopes(claims: dict[str, Any]) -> list[str]:
    raw = claims.get("scope", claims.get("scp"))
    if isinstance(raw, str):
        return [s for s in raw.split() if s]
    if isinstance(raw, list):
        return [str(s) for s in raw if isinstance(s, str)]
    return []


def _amr(claims: dict[str, Any]) -> list[str]:
    raw = claims.get("amr")
    return [str(a) for a in raw if isinstance(a, str)] if isinstance(raw, list) else []


def _audiences(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def _same_resource(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


class JWTVerifier(TokenVerifier):
    """The SDK's ``TokenVerifier`` for our issuer: ``verify_token`` gives a ``VerifiedToken`` or ``None``."""

    def __init__(self, issuer: str, audience: str, *, introspection_url: str | None = None,
                 client_id: str | None = None, client_secret: str | None = None, timeout_s: float = 5.0,
                 jwks_cache_s: float = 300.0, refetch_interval_s: float = 10.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.issuer = issuer
        self.audience = audience
        self.introspection_url = introspection_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._timeout = httpx.Timeout(timeout_s)
        self.jwks_cache_s = jwks_cache_s
        self.refetch_interval_s = refetch_interval_s
        self._transport = transport
        self._keys: _Keys | None = None
        self._jwks_uri: str | None = None
        self._last_attempt = float("-inf")
        self._lock = asyncio.Lock()
        self._down = False  # logged once per outage, not once per request

    # -- fetching -------------------------------------------------------------------------------------------
    async def _get_json(self, client: httpx.AsyncClient, url: str, **kwargs: Any) -> Any:
        method = "POST" if "data" in kwargs else "GET"
        async with client.stream(method, url, headers={"accept": "application/json"}, **kwargs) as resp:
            if resp.status_code != 200:
                raise IssuerUnavailable(f"{url} answered HTTP {resp.status_code}")
            body = bytearray()
            async for chunk in resp.aiter_bytes():
                body += chunk
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise IssuerUnavailable(f"{url} sent more than {MAX_DOCUMENT_BYTES} bytes")
        try:
            return json.loads(bytes(body))
        except ValueError as exc:
            raise IssuerUnavailable(f"{url} did not answer JSON") from exc

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=self._timeout, transport=self._transport, follow_redirects=False)

    async def _discover(self, client: httpx.AsyncClient) -> str:
        problems = []
        for url in metadata_urls(self.issuer):
            try:
                meta = await self._get_json(client, url)
            except (IssuerUnavailable, httpx.HTTPError) as exc:
                problems.append(str(exc) or type(exc).__name__)
                continue
            if not isinstance(meta, dict) or meta.get("issuer") != self.issuer:
                problems.append(f"{url} names issuer {meta.get('issuer') if isinstance(meta, dict) else None!r}, "
                                f"not {self.issuer!r}")
                continue
            if not isinstance(meta.get("jwks_uri"), str):
                problems.append(f"{url} has no jwks_uri")
                continue
            return meta["jwks_uri"]
        raise IssuerUnavailable("; ".join(problems))

    async def _fetch_keys(self) -> None:
        self._last_attempt = time.monotonic()
        try:
            async with self._client() as client:
                if self._jwks_uri is None:
                    self._jwks_uri = await self._discover(client)
                doc = await self._get_json(client, self._jwks_uri)
            try:
                keyset = KeySet.import_key_set(doc)
            except (JoseError, ValueError, TypeError, KeyError) as exc:
                raise IssuerUnavailable(f"{self._jwks_uri} is not a usable JWKS ({type(exc).__name__})") from exc
        except (IssuerUnavailable, httpx.HTTPError) as exc:
            self._jwks_uri = None  # the issuer may have moved its keys; rediscover next time
            if not self._down:
                log.warning("auth: cannot fetch the signing keys of issuer %s (%s); refusing bearer tokens "
                            "until it answers (retrying at most every %g s)", self.issuer,
                            str(exc) or type(exc).__name__, self.refetch_interval_s)
            self._down = True
            raise IssuerUnavailable(str(exc)) from exc
        if self._down:
            log.warning("auth: issuer %s answers again; bearer tokens are verified", self.issuer)
        self._down = False
        self._keys = _Keys(keyset, time.monotonic())

    async def _keyset(self, kid: str | None) -> KeySet | None:
        """The cached keys, refetched when stale or when ``kid`` is unknown (rate-limited); None: no keys."""
        async with self._lock:
            now = time.monotonic()
            keys = self._keys
            stale = keys is None or now - keys.fetched_at > self.jwks_cache_s
            unknown = keys is not None and kid is not None and kid not in {k.kid for k in keys.keyset.keys}
            if (stale or unknown) and now - self._last_attempt >= self.refetch_interval_s:
                try:
                    await self._fetch_keys()
                except IssuerUnavailable:
                    pass
            keys = self._keys
            if keys is None or time.monotonic() - keys.fetched_at > self.jwks_cache_s:
                return None  # no keys, or only stale ones: fail closed
            return keys.keyset

    # -- verifying ------------------------------------------------------------------------------------------
    async def verify_token(self, token: str) -> VerifiedToken | None:
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        parts = token.split(".")
        if len(parts) != 3:
            if len(parts) == 5:
                log.info("auth: refused an encrypted (JWE) token")
                return None
            return await self._introspect(token) if self.introspection_url else None
        try:
            return await self._verify_jwt(token, parts[0])
        except Exception as exc:  # noqa: BLE001 - a token must never crash the request; it is refused
            log.info("auth: refused a token (%s)", type(exc).__name__)
            return None

    async def _verify_jwt(self, token: str, header_b64: str) -> VerifiedToken | None:
        try:
            header = _b64json(header_b64)
        except (ValueError, UnicodeDecodeError):
            log.info("auth: refused a malformed token")
            return None
        if not isinstance(header, dict):
            return None
        alg, typ, kid = header.get("alg"), header.get("typ"), header.get("kid")
        if alg not in ALLOWED_ALGS:
            log.info("auth: refused a token signed with alg %r (allowed: %s)", alg, ", ".join(ALLOWED_ALGS))
            return None
        if not isinstance(typ, str) or typ.lower() not in ALLOWED_TYP:
            log.info("auth: refused a token of typ %r (allowed: at+jwt, JWT)", typ)
            return None
        if kid is not None and not isinstance(kid, str):
            return None
        keyset = await self._keyset(kid)
        if keyset is None:
            return None  # the issuer is down (logged once by _fetch_keys)
        candidates = [k for k in keyset.keys if (kid is None or k.kid == kid) and k.key_type == ALLOWED_ALGS[alg]]
        if not candidates:
            log.info("auth: refused a token signed with unknown key %r", kid)
            return None
        claims: dict[str, Any] | None = None
        for key in candidates:
            try:
                claims = jwt.decode(token, key, algorithms=[alg]).claims
                break
            except JoseError:
                continue
        if claims is None:
            log.info("auth: refused a token whose signature does not verify")
            return None
        return self._accept(token, claims)

    def _accept(self, token: str, claims: dict[str, Any], *, require_exp: bool = True) -> VerifiedToken | None:
        """Check the claims every token needs (issuer, audience, lifetime, subject) and build the token."""
        now = time.time()
        if claims.get("iss") != self.issuer:
            log.info("auth: refused a token from another issuer")
            return None
        if not any(_same_resource(a, self.audience) for a in _audiences(claims.get("aud"))):
            log.info("auth: refused a token for another audience")
            return None
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if exp is None and require_exp:
            log.info("auth: refused a token without exp")
            return None
        for name, value in (("exp", exp), ("nbf", nbf), ("iat", claims.get("iat"))):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                log.info("auth: refused a token whose %s is not a number", name)
                return None
        if exp is not None and exp <= now - LEEWAY_S:
            log.info("auth: refused an expired token")
            return None
        if nbf is not None and nbf > now + LEEWAY_S:
            log.info("auth: refused a token not valid yet")
            return None
        sub = claims.get("sub")
        client_id = claims.get("client_id") or claims.get("azp")
        if not isinstance(sub, str) or not sub:
            log.info("auth: refused a token without a subject")
            return None
        return VerifiedToken(token=token, client_id=str(client_id) if isinstance(client_id, str) else "",
                             scopes=_scopes(claims), expires_at=int(exp) if exp is not None else None,
                             resource=self.audience, subject=sub, claims=claims, issuer=self.issuer,
                             amr=_amr(claims))

    async def _introspect(self, token: str) -> VerifiedToken | None:
        """RFC 7662: ask the issuer about an opaque token; only an active one for us is accepted."""
        auth = (self._client_id, self._client_secret) if self._client_id else None
        try:
            async with self._client() as client:
                data = await self._get_json(client, self.introspection_url or "", data={"token": token,
                                            "token_type_hint": "access_token"}, auth=auth)
        except (IssuerUnavailable, httpx.HTTPError) as exc:
            if not self._down:
                log.warning("auth: cannot reach the introspection endpoint %s (%s); refusing opaque tokens until "
                            "it answers", self.introspection_url, str(exc) or type(exc).__name__)
            self._down = True
            return None
        if self._down:
            log.warning("auth: introspection endpoint %s answers again", self.introspection_url)
        self._down = False
        if not isinstance(data, dict) or data.get("active") is not True:
            log.info("auth: refused an inactive opaque token")
            return None
        claims = dict(data)
        claims.setdefault("iss", self.issuer)  # RFC 7662 makes iss optional; the endpoint is the issuer's own
        if "aud" not in claims:  # optional too; without it the introspection endpoint vouches for this resource
            claims["aud"] = self.audience
        token_type = claims.get("token_type")
        if token_type is not None and str(token_type).lower() not in {"bearer", "access_token"}:
            log.info("auth: refused an introspected token of type %r", token_type)
            return None
        return self._accept(token, claims, require_exp=False)
