"""Issue #15 item 1: the HTTP server as an OAuth resource server, driven over real HTTP.

A real ``echotune-mcp serve --transport http`` runs in a subprocess with authorization configured against the
tests' own JWKS-serving issuer (tests/auth/conftest.py). Raw HTTP checks the status codes and the
``WWW-Authenticate`` headers exactly; the SDK's MCP client checks that accepted tokens really work end to end and
that two principals cannot see each other's jobs or artifacts.
"""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from joserfc.jwk import ECKey, RSAKey

from tests.auth.conftest import Issuer, RunningServer, mcp_http_client, start_server
from tests.conftest import stop_process

READ, WRITE, PROVIDERS = "echotune:read", "echotune:write", "echotune:providers"
ALL = (READ, WRITE, PROVIDERS)
ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
# The matrix sends dozens of bad tokens from one address and many calls as one user: the bad-token slow-down and
# the rate limits (tests/auth/test_limits.py) would only make it slow here.
NO_LIMITS = {"ECHOTUNE_AUTH_FAIL_DELAY_MAX_S": "0", "ECHOTUNE_RATE_PER_MINUTE": "0"}


@pytest.fixture(scope="module")
def server(issuer: Issuer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = start_server(tmp_path_factory.mktemp("rs"), issuer, {**NO_LIMITS, "ECHOTUNE_TOOLSETS": "jobs,artifacts,compose,listening"})
    try:
        yield srv
    finally:
        stop_process(srv.proc)


def rpc(method: str, params: dict | None = None, id_: int = 1) -> dict:
    return {"jsonrpc": "2.0", "id": id_, "method": method, **({"params": params} if params is not None else {})}


INITIALIZE = rpc("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                "clientInfo": {"name": "auth-test", "version": "1"}})


def post(server: RunningServer, body: object, token: str | None = None) -> httpx.Response:
    headers = dict(ACCEPT)
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return httpx.post(server.mcp, content=json.dumps(body), headers=headers, timeout=30)


def challenge(resp: httpx.Response) -> dict[str, str]:
    """The parameters of a ``Bearer`` challenge (``k="v", ...``)."""
    value = resp.headers.get("www-authenticate", "")
    assert value.startswith("Bearer "), value
    out = {}
    for part in value[7:].split('", '):
        key, _, raw = part.partition("=")
        out[key.strip()] = raw.strip().strip('"')
    return out


def call(tool: str, arguments: dict | None = None) -> dict:
    return rpc("tools/call", {"name": tool, "arguments": arguments or {}})


# -- metadata and the 401 without a token --------------------------------------------------------------------
def test_protected_resource_metadata_names_the_issuer_and_scopes(server, issuer):
    for path in ("/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"):
        meta = httpx.get(server.url + path, timeout=10).json()
        assert meta["resource"] == server.mcp and meta["authorization_servers"] == [issuer.url]
        assert set(meta["scopes_supported"]) == set(ALL) and meta["bearer_methods_supported"] == ["header"]


def test_no_token_gets_401_pointing_at_the_metadata(server):
    resp = post(server, INITIALIZE)
    assert resp.status_code == 401
    assert challenge(resp) == {"resource_metadata": f"{server.url}/.well-known/oauth-protected-resource/mcp"}
    assert httpx.get(server.url + "/healthz", timeout=10).status_code == 200  # liveness needs no token


# -- the token matrix ----------------------------------------------------------------------------------------
def _refused_tokens(issuer: Issuer) -> dict[str, str]:
    now = int(time.time())
    stranger = RSAKey.generate_key(2048, parameters={"kid": "stranger"})
    impostor = RSAKey.generate_key(2048, parameters={"kid": issuer.rsa.kid})  # right kid, wrong key
    return {
        "malformed": "not-a-token",
        "malformed three parts": "eyJhbGciOiJSUzI1NiJ9.e30.AAAA",
        "garbage header": "%%%.e30.AAAA",
        "expired": issuer.token("alice", ALL, exp=now - 120, iat=now - 800),
        "not yet valid": issuer.token("alice", ALL, nbf=now + 600),
        "no exp": issuer.token("alice", ALL, exp=None),
        "wrong audience": issuer.token("alice", ALL, aud="https://other.example/mcp"),
        "no audience": issuer.token("alice", ALL, aud=""),
        "wrong issuer": issuer.token("alice", ALL, iss="https://evil.example"),
        "empty subject": issuer.token("", ALL),
        "alg none": issuer.unsigned("alice", ALL),
        "HS256 signed with the public key": issuer.hs256_with_public_key("alice", ALL),
        "unknown kid": issuer.token("alice", ALL, key=stranger),
        "known kid, wrong key": issuer.token("alice", ALL, key=impostor),
        "ES256 naming the RSA key": issuer.token("alice", ALL, alg="ES256", kid=issuer.rsa.kid),
        "typ of an ID token": issuer.token("alice", ALL, typ="id_token+jwt"),
        "no typ": issuer.token("alice", ALL, typ=None),
        "inactive opaque token": issuer.opaque_token("alice", ALL, active=False),
        "unknown opaque token": "opaque-token-nobody-issued",
    }


def test_every_bad_token_gets_a_bare_401(server, issuer):
    for name, token in _refused_tokens(issuer).items():
        resp = post(server, INITIALIZE, token)
        assert resp.status_code == 401, name
        assert challenge(resp) == {"error": "invalid_token",
                                   "resource_metadata": f"{server.url}/.well-known/oauth-protected-resource/mcp"}, name
        assert resp.json() == {"error": "invalid_token"}, name  # nothing that tells an attacker what was wrong


@pytest.mark.parametrize("kind", ["RS256 at+jwt", "ES256 at+jwt", "RS256 JWT", "expired within the 60 s skew",
                                  "audience in a list", "opaque token by introspection"])
def test_good_tokens_are_accepted(server, issuer, kind):
    now = int(time.time())
    token = {
        "RS256 at+jwt": lambda: issuer.token("alice", ALL),
        "ES256 at+jwt": lambda: issuer.token("alice", ALL, alg="ES256"),
        "RS256 JWT": lambda: issuer.token("alice", ALL, typ="JWT"),
        "expired within the 60 s skew": lambda: issuer.token("alice", ALL, exp=now - 20),
        "audience in a list": lambda: issuer.token("alice", ALL, aud=["https://other.example", server.mcp]),
        "opaque token by introspection": lambda: issuer.opaque_token("alice", ALL),
    }[kind]()
    resp = post(server, INITIALIZE, token)
    assert resp.status_code == 200, (kind, resp.text, server.log_text()[-2000:])
    assert '"serverInfo"' in resp.text


def test_key_rotation_is_picked_up_without_a_restart(server, issuer):
    assert post(server, INITIALIZE, issuer.token("alice", ALL)).status_code == 200
    old = issuer.token("alice", ALL)
    new_kid = issuer.rotate()
    time.sleep(0.6)  # the server refetches keys at most every ECHOTUNE_AUTH_REFETCH_INTERVAL_S (0.5 s here)
    fresh = issuer.token("alice", ALL)
    assert json.loads(base64.urlsafe_b64decode(fresh.split(".")[0] + "==")) ["kid"] == new_kid
    assert post(server, INITIALIZE, fresh).status_code == 200
    assert post(server, INITIALIZE, old).status_code == 401  # the retired key left the JWKS


def test_unknown_kids_do_not_hammer_the_issuer(server, issuer):
    stranger = ECKey.generate_key("P-256", parameters={"kid": "stranger-ec"})
    time.sleep(0.6)
    token = issuer.token("alice", ALL, alg="ES256", key=stranger)
    before, started = len(issuer.fetches), time.monotonic()
    for _ in range(20):
        assert post(server, INITIALIZE, token).status_code == 401
    elapsed = time.monotonic() - started
    fetched = [p for p in issuer.fetches[before:] if p == "/jwks"]
    assert 1 <= len(fetched) <= 1 + elapsed / 0.5, (len(fetched), elapsed)  # one per interval, not per request


# -- scopes and step-up ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("scopes,body,needed", [
    ((WRITE,), call("list_jobs"), READ),
    ((READ,), call("generate_music", {"prompt": "x"}), WRITE),
    ((READ,), call("delete_artifact", {"artifact": "x"}), WRITE),
    ((WRITE,), rpc("resources/read", {"uri": "echotune://artifacts/abc"}), READ),
    ((WRITE,), rpc("prompts/list"), READ),
    ((READ,), [call("list_jobs"), call("cancel_job", {"job_id": "x"})], f"{READ} {WRITE}"),  # a batch: all it
])                                                                      # needs, for one re-authorization
def test_a_missing_scope_gets_403_with_the_scope_needed(server, issuer, scopes, body, needed):
    resp = post(server, body, issuer.token("alice", scopes, amr=["pwd", "otp"]))
    assert resp.status_code == 403
    got = challenge(resp)
    assert got["error"] == "insufficient_scope" and got["scope"] == needed
    assert got["resource_metadata"].endswith("/.well-known/oauth-protected-resource/mcp")


@pytest.mark.parametrize("tool", ["delete_artifact", "cancel_job"])
def test_destructive_tools_need_a_second_factor(server, issuer, tool):
    args = {"artifact": "x"} if tool == "delete_artifact" else {"job_id": "x"}
    resp = post(server, call(tool, args), issuer.token("alice", ALL, amr=["pwd"]))
    if tool == "cancel_job":  # not destructive: the scope is enough (the SDK then wants a session: not 401/403)
        assert resp.status_code not in (401, 403)
        return
    assert resp.status_code == 401
    got = challenge(resp)
    assert got["error"] == "insufficient_user_authentication" and got["acr_values"] == "mfa"
    assert "delete_artifact" in got["error_description"]


async def test_step_up_passes_with_mfa_in_amr_over_the_mcp_client(server, issuer):
    async with mcp_http_client(server.mcp, issuer.token("carol", ALL, amr=["pwd", "mfa"])) as client:
        result = await client.call_tool("delete_artifact", {"artifact": "art_nonexistent"})
        assert result.is_error and "art_nonexistent" in result.content[0].text  # it ran: the tool said not found
    with pytest.raises(Exception):  # the client cannot get past the HTTP 401
        async with mcp_http_client(server.mcp, issuer.token("carol", ALL, amr=["pwd"])) as client:
            await client.call_tool("delete_artifact", {"artifact": "art_nonexistent"})


# -- the issuer down -----------------------------------------------------------------------------------------
def test_issuer_down_fails_closed_then_recovers_without_a_restart(http_server, issuer):
    issuer.down = True
    try:
        srv = http_server({**NO_LIMITS, "ECHOTUNE_AUTH_JWKS_CACHE_S": "2"})
        for _ in range(3):
            assert post(srv, INITIALIZE, issuer.token("dave", ALL)).status_code == 401
        time.sleep(0.6)
        assert post(srv, INITIALIZE, issuer.token("dave", ALL)).status_code == 401
    finally:
        issuer.down = False
    log = srv.log_text()
    assert log.count("cannot fetch the signing keys of issuer") == 1, log  # one clear line per outage
    time.sleep(0.6)
    assert post(srv, INITIALIZE, issuer.token("dave", ALL)).status_code == 200
    assert "answers again" in srv.log_text()
    # Keys are trusted only ECHOTUNE_AUTH_JWKS_CACHE_S after a fetch: past it, with the issuer down, refuse.
    issuer.down = True
    try:
        time.sleep(2.2)
        assert post(srv, INITIALIZE, issuer.token("dave", ALL)).status_code == 401
    finally:
        issuer.down = False
    time.sleep(0.6)
    assert post(srv, INITIALIZE, issuer.token("dave", ALL)).status_code == 200


# -- two principals over real HTTP -----------------------------------------------------------------------------
def _wav() -> str:
    t = np.arange(11025) / 22050
    buf = io.BytesIO()
    sf.write(buf, (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 22050, format="WAV")
    return base64.b64encode(buf.getvalue()).decode()


async def test_two_principals_cannot_see_each_others_jobs_artifacts_or_plays(server, issuer):
    alice = issuer.token("alice", ALL, amr=["pwd", "otp"])
    bob = issuer.token("bob", ALL, amr=["pwd", "otp"])
    async with mcp_http_client(server.mcp, alice) as client:
        imported = await client.call_tool("import_audio", {"data_base64": _wav(), "filename": "alice.wav"})
        assert not imported.is_error, imported.content
        art_id = imported.structured_content["artifact_id"]
        started = await client.call_tool("generate_music", {"prompt": "calm jazz trio", "duration_s": 4, "seed": 1,
                                                            "wait_seconds": 0})
        assert not started.is_error, started.content
        job_id = started.structured_content["job_id"]
        assert art_id in {a["artifact_id"] for a in (await client.call_tool("list_artifacts", {})).structured_content["artifacts"]}
        assert job_id in {j["job_id"] for j in (await client.call_tool("list_jobs", {})).structured_content["jobs"]}
        history = json.dumps([{"endTime": f"2024-03-0{d} 10:00", "artistName": "Alice Coltrane",
                               "trackName": "Journey in Satchidananda", "msPlayed": 300000} for d in range(1, 4)])
        plays = await client.call_tool("import_listening_history", {
            "data_base64": base64.b64encode(history.encode()).decode(), "filename": "StreamingHistory_music_0.json",
            "wait_seconds": 20})
        assert not plays.is_error and plays.structured_content["status"] == "succeeded", plays.content
        mine = await client.call_tool("taste_profile", {})
        assert not mine.is_error and mine.structured_content["totals"]["plays"] == 3
    async with mcp_http_client(server.mcp, bob) as client:
        theirs = await client.call_tool("taste_profile", {})  # alice's plays are not bob's
        assert theirs.is_error and "import_listening_history" in str(theirs.content), theirs.content
        assert art_id not in {a["artifact_id"] for a in
                              (await client.call_tool("list_artifacts", {})).structured_content["artifacts"]}
        assert job_id not in {j["job_id"] for j in (await client.call_tool("list_jobs", {})).structured_content["jobs"]}
        for tool, args in (("get_artifact", {"artifact": art_id}), ("get_job", {"job_id": job_id}),
                           ("delete_artifact", {"artifact": art_id}), ("cancel_job", {"job_id": job_id})):
            result = await client.call_tool(tool, args)
            assert result.is_error, (tool, result.content)
        with pytest.raises(Exception):
            await client.read_resource(f"echotune://artifacts/{art_id}")
    async with mcp_http_client(server.mcp, alice) as client:  # bob's attempts changed nothing of alice's
        got = await client.call_tool("get_artifact", {"artifact": art_id})
        assert not got.is_error and got.structured_content["artifact_id"] == art_id
        job = await client.call_tool("get_job", {"job_id": job_id})
        assert not job.is_error and job.structured_content["status"] != "cancelled"


def test_a_session_belongs_to_the_token_that_opened_it(server, issuer):
    """Another principal presenting alice's Mcp-Session-Id is answered as if the session did not exist."""
    opened = post(server, INITIALIZE, issuer.token("alice", ALL))
    assert opened.status_code == 200
    session = {"mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-06-18"}

    def list_jobs(token: str) -> httpx.Response:
        return httpx.post(server.mcp, content=json.dumps(call("list_jobs")), timeout=30,
                          headers={**ACCEPT, **session, "authorization": f"Bearer {token}"})

    assert list_jobs(issuer.token("mallory", ALL)).status_code == 404
    assert list_jobs(issuer.token("alice", ALL)).status_code == 200


def test_without_an_issuer_http_stays_the_local_user(tmp_path: Path):
    srv = start_server(tmp_path, None, NO_LIMITS)
    try:
        resp = post(srv, INITIALIZE)
        assert resp.status_code == 200 and "www-authenticate" not in resp.headers
        assert httpx.get(srv.url + "/.well-known/oauth-protected-resource/mcp", timeout=10).status_code == 404
    finally:
        stop_process(srv.proc)


# -- the verifier's discovery and fetching, at the HTTP boundary (httpx MockTransport) --------------------------
ISS = "https://idp.example/tenant1"
AUD = "https://music.example/mcp"


def _signed(key: RSAKey, **claims) -> str:
    from joserfc import jwt

    now = int(time.time())
    base = {"iss": ISS, "sub": "erin", "aud": AUD, "exp": now + 300, "scope": READ} | claims
    return jwt.encode({"alg": "RS256", "typ": "at+jwt", "kid": key.kid}, base, key)


def _verifier(handler, **kw):
    from echotune_mcp.auth.verifier import JWTVerifier

    return JWTVerifier(ISS, AUD, transport=httpx.MockTransport(handler), refetch_interval_s=0, **kw)


def test_metadata_urls_insert_the_well_known_before_the_issuer_path():
    from echotune_mcp.auth.verifier import metadata_urls

    assert metadata_urls(ISS) == ["https://idp.example/.well-known/oauth-authorization-server/tenant1",
                                  "https://idp.example/tenant1/.well-known/openid-configuration"]
    assert metadata_urls("https://idp.example")[0] == "https://idp.example/.well-known/oauth-authorization-server"


async def test_openid_metadata_is_the_fallback_and_a_mixed_up_issuer_is_refused():
    key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    claimed = {"issuer": ISS}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/tenant1/.well-known/openid-configuration":
            return httpx.Response(200, json={**claimed, "jwks_uri": "https://idp.example/keys"})
        if request.url.path == "/keys":
            return httpx.Response(200, json={"keys": [key.as_dict(private=False)]})
        return httpx.Response(404)

    token = await _verifier(handler).verify_token(_signed(key))
    assert token is not None and token.subject == "erin" and token.scopes == [READ] and token.issuer == ISS
    claimed["issuer"] = "https://attacker.example"  # metadata of another issuer (RFC 8414 §3.3): not trusted
    assert await _verifier(handler).verify_token(_signed(key)) is None


@pytest.mark.parametrize("failure", ["timeout", "refused", "oversized", "not json", "not a jwks"])
async def test_a_broken_issuer_fails_closed(failure, caplog):
    key = RSAKey.generate_key(2048, parameters={"kid": "k1"})

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/.well-known/oauth-authorization-server"):
            return httpx.Response(200, json={"issuer": ISS, "jwks_uri": "https://idp.example/keys"})
        if failure == "timeout":
            raise httpx.ReadTimeout("slow", request=request)
        if failure == "refused":
            raise httpx.ConnectError("refused", request=request)
        if failure == "oversized":
            return httpx.Response(200, content=b"{" + b" " * (600 * 1024) + b"}")
        if failure == "not json":
            return httpx.Response(200, content=b"<html>")
        return httpx.Response(200, json={"keys": [{"kty": "RSA", "n": "??"}]})

    verifier = _verifier(handler)
    with caplog.at_level("WARNING", logger="echotune_mcp.auth"):
        for _ in range(3):
            assert await verifier.verify_token(_signed(key)) is None
    lines = [r.getMessage() for r in caplog.records if "cannot fetch the signing keys" in r.getMessage()]
    assert len(lines) == 1 and ISS in lines[0]  # one line per outage, naming the issuer


async def test_introspection_needs_an_active_token_for_this_audience():
    answers = {"good": {"active": True, "sub": "frank", "scope": f"{READ} {WRITE}", "aud": AUD, "iss": ISS,
                        "exp": int(time.time()) + 60},
               "other-aud": {"active": True, "sub": "frank", "aud": "https://else.example"},
               "other-iss": {"active": True, "sub": "frank", "iss": "https://else.example"},
               "refresh": {"active": True, "sub": "frank", "token_type": "refresh_token"},
               "inactive": {"active": False}}

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/introspect" and request.headers["authorization"].startswith("Basic ")
        form = dict(pair.split("=", 1) for pair in request.content.decode().split("&"))
        return httpx.Response(200, json=answers[form["token"]])

    verifier = _verifier(handler, introspection_url="https://idp.example/introspect", client_id="rs",
                         client_secret="s")
    good = await verifier.verify_token("good")
    assert good is not None and good.subject == "frank" and set(good.scopes) == {READ, WRITE}
    for name in ("other-aud", "other-iss", "refresh", "inactive"):
        assert await verifier.verify_token(name) is None, name
