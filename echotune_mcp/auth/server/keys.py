"""Signing keys and the JWKS: RS256 keys in the state file, one active; rotation keeps the previous key published.

``rotate`` makes a new key the signer at once. The old key leaves the JWKS only when the last access token it
can have signed has expired (its retirement time plus the access-token lifetime plus a minute of clock skew),
so a resource server that refreshes its JWKS cache never rejects a token that is still valid.
"""

from __future__ import annotations

import json
import secrets
import time

from joserfc import jwt
from joserfc.jwk import RSAKey

from .store import Store

ALG = "RS256"
SKEW_S = 60


def _new_key() -> tuple[str, dict]:
    key = RSAKey.generate_key(2048, private=True)
    kid = f"{time.strftime('%Y%m%d', time.gmtime())}-{secrets.token_hex(6)}"
    data = key.as_dict(private=True)
    data.update(kid=kid, alg=ALG, use="sig")
    return kid, data


def rotate(store: Store, access_token_ttl_s: int) -> str:
    """Create and activate a new signing key; return its ``kid``."""
    kid, data = _new_key()
    store.add_signing_key(kid, data, publish_old_until=time.time() + access_token_ttl_s + SKEW_S)
    return kid


def _active(store: Store, access_token_ttl_s: int) -> dict:
    for row in reversed(store.signing_keys()):
        if row["retired_at"] is None:
            return json.loads(row["private_jwk"])
    rotate(store, access_token_ttl_s)  # first start: no key yet
    return _active(store, access_token_ttl_s)


def ensure_key(store: Store, access_token_ttl_s: int) -> str:
    return _active(store, access_token_ttl_s)["kid"]


def sign(store: Store, access_token_ttl_s: int, claims: dict) -> str:
    """An RFC 9068 access token: ``typ: at+jwt``, signed by the active key, its ``kid`` in the header."""
    data = _active(store, access_token_ttl_s)
    key = RSAKey.import_key(data)
    return jwt.encode({"alg": ALG, "typ": "at+jwt", "kid": data["kid"]}, claims, key, algorithms=[ALG])


def public_jwks(store: Store) -> dict:
    """The active key and every retired key still inside its publication window (public parts only)."""
    now = time.time()
    keys = []
    for row in store.signing_keys():
        if row["retired_at"] is not None and (row["publish_until"] or 0) < now:
            continue
        data = json.loads(row["private_jwk"])
        public = RSAKey.import_key(data).as_dict(private=False)
        public.update(kid=data["kid"], alg=ALG, use="sig")
        keys.append(public)
    return {"keys": keys}

