"""The bundled authorization server (`echotune-mcp auth-server`), driven over HTTP in a subprocess.

A browser is played by httpx: it opens the authorization URL, fills the server-rendered form (no JavaScript),
types the TOTP code pyotp computes, and follows the redirect. The client is a Client ID Metadata Document
served by a thread on 127.0.0.1. Tokens are verified against the server's own JWKS with joserfc.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import queue
import re
import secrets
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pyotp
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.conftest import free_port, stop_process
from tests.node.conftest import NodeTools, node_tools  # noqa: F401  (the fixture, for the conformance run)

RESOURCE = "http://127.0.0.1:8770/mcp"
OTHER_RESOURCE = "https://music.example/mcp"
PASSWORD = "correct horse battery staple"
MAX_FAILURES = 3
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _cli() -> list[str]:
    script = Path(sys.executable).parent / "echotune-mcp"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "echotune_mcp"]


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECHOTUNE_")}
    env.update(extra or {})
    return env


def run_cli(data_dir: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([*_cli(), "auth-server", *args, "--data-dir", str(data_dir)], input=stdin, text=True,
                          capture_output=True, timeout=60, env=_env(), check=False)


class ClientDocs:
    """Client ID Metadata Documents served on 127.0.0.1: ``url(name)`` is a client_id."""

    def __init__(self) -> None:
        self.port = free_port()
        self.docs: dict[str, dict] = {}
        docs = self.docs

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                doc = docs.get(self.path)
                body = json.dumps(doc).encode() if doc is not None else b"{}"
                self.send_response(200 if doc is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def add(self, name: str, redirect_uris: list[str], **extra: object) -> str:
        url = f"http://127.0.0.1:{self.port}/{name}.json"
        self.docs[f"/{name}.json"] = {"client_id": url, "client_name": f"Test {name}", "redirect_uris": redirect_uris,
                                      "grant_types": ["authorization_code", "refresh_token"],
                                      "token_endpoint_auth_method": "none", **extra}
        return url

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@dataclass
class AuthServer:
    url: str
    data_dir: Path
    log: Path
    docs: ClientDocs
    totp: dict[str, str]  # username -> TOTP seed

    def add_user(self, name: str, *, totp: bool) -> str | None:
        proc = run_cli(self.data_dir, "user", "add", name, "--password-stdin", *(["--totp"] if totp else []),
                       stdin=PASSWORD + "\n")
        assert proc.returncode == 0, proc.stderr
        if totp:
            uri = next(line for line in proc.stdout.splitlines() if line.startswith("otpauth://"))
            secret = urllib.parse.parse_qs(urllib.parse.urlsplit(uri).query)["secret"][0]
            self.totp[name] = secret
            return secret
        return None

    def subject(self, name: str) -> str:
        out = run_cli(self.data_dir, "user", "list").stdout
        return re.search(rf"^{re.escape(name)}\tsub=(\w+)", out, re.M).group(1)

    def jwks(self) -> dict:
        return httpx.get(f"{self.url}/jwks.json", timeout=10).json()


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    base = tmp_path_factory.mktemp("auth-server")
    data_dir, log = base / "data", base / "server.log"
    port = free_port()
    env = _env({"ECHOTUNE_AUTH_SERVER_LOOPBACK_CLIENT_IDS": "1", "ECHOTUNE_AUTH_SERVER_ACCESS_TOKEN_TTL": "300",
                "ECHOTUNE_AUTH_SERVER_LOGIN_MAX_FAILURES": str(MAX_FAILURES),
                "ECHOTUNE_AUTH_SERVER_RESOURCES": f"{RESOURCE},{OTHER_RESOURCE}"})
    docs = ClientDocs()
    with log.open("wb") as fh:
        proc = subprocess.Popen([*_cli(), "auth-server", "serve", "--port", str(port), "--data-dir", str(data_dir)],
                                env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"auth-server exited early:\n{log.read_text()}"
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"auth-server did not start:\n{log.read_text()}"
            time.sleep(0.2)
        yield AuthServer(url=url, data_dir=data_dir, log=log, docs=docs, totp={})
    finally:
        stop_process(proc)
        docs.close()


# -- a browser, played by httpx ---------------------------------------------------------------------------
def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def _field(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no {name} field in:\n{html[:2000]}"
    return match.group(1)


def authorize_params(client_id: str, redirect_uri: str, challenge: str, **extra: str) -> dict[str, str]:
    return {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "state": "st-" +
            secrets.token_hex(4), "code_challenge": challenge, "code_challenge_method": "S256", "resource": RESOURCE,
            "scope": "echotune:read echotune:write", **extra}


def sign_in(server: AuthServer, browser: httpx.Client, authorize_url: str, username: str, *,
            password: str = PASSWORD, otp: str | None = None) -> httpx.Response:
    """Open the authorization URL, post the password (then the TOTP code if asked); the last response."""
    page = browser.get(authorize_url)
    assert page.status_code == 200, page.text
    assert "<script" not in page.text.lower() and 'method="post"' in page.text
    txn, csrf = _field(page.text, "txn"), _field(page.text, "csrf")
    resp = browser.post(f"{server.url}/login", data={"txn": txn, "csrf": csrf, "username": username,
                                                     "password": password, "action": "login"})
    if resp.status_code == 200 and 'action="/login/otp"' in resp.text:
        code = otp if otp is not None else pyotp.TOTP(server.totp[username]).now()
        resp = browser.post(f"{server.url}/login/otp", data={"txn": txn, "csrf": csrf, "code": code})
    return resp


def code_from(resp: httpx.Response, redirect_uri: str, state: str, issuer: str) -> str:
    assert resp.status_code == 303, f"{resp.status_code}: {resp.text[:1000]}"
    location = resp.headers["location"]
    assert location.startswith(redirect_uri + "?")
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)
    assert "error" not in query, query
    assert query["state"] == [state] and query["iss"] == [issuer]
    return query["code"][0]


def exchange(server: AuthServer, client_id: str, code: str, redirect_uri: str, verifier: str) -> httpx.Response:
    return httpx.post(f"{server.url}/token", data={"grant_type": "authorization_code", "code": code,
                                                   "redirect_uri": redirect_uri, "client_id": client_id,
                                                   "code_verifier": verifier, "resource": RESOURCE}, timeout=10)


def refresh(server: AuthServer, client_id: str, token: str) -> httpx.Response:
    return httpx.post(f"{server.url}/token", data={"grant_type": "refresh_token", "refresh_token": token,
                                                   "client_id": client_id}, timeout=10)


def full_login(server: AuthServer, name: str, username: str, scope: str = "echotune:read echotune:write",
               **sign_in_kw: str) -> tuple[str, dict]:
    """Run the whole code + PKCE flow for a fresh client ``name``; (client_id, token response)."""
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    client_id = server.docs.add(name, [redirect_uri])
    verifier, challenge = pkce()
    params = authorize_params(client_id, redirect_uri, challenge, scope=scope)
    with httpx.Client(timeout=10) as browser:
        resp = sign_in(server, browser, f"{server.url}/authorize?{urllib.parse.urlencode(params)}", username,
                       **sign_in_kw)
    code = code_from(resp, redirect_uri, params["state"], server.url)
    token = exchange(server, client_id, code, redirect_uri, verifier)
    assert token.status_code == 200, token.text
    return client_id, token.json()


def verified_claims(server: AuthServer, access_token: str) -> tuple[dict, dict]:
    decoded = jwt.decode(access_token, KeySet.import_key_set(server.jwks()), algorithms=["RS256"])
    return decoded.header, decoded.claims


# -- tests ------------------------------------------------------------------------------------------------
def test_metadata_names_the_endpoints_and_only_s256(auth_server: AuthServer) -> None:
    resp = httpx.get(f"{auth_server.url}/.well-known/oauth-authorization-server", timeout=10)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/json")
    doc = resp.json()
    assert doc["issuer"] == auth_server.url
    assert doc["authorization_endpoint"] == f"{auth_server.url}/authorize"
    assert doc["token_endpoint"] == f"{auth_server.url}/token"
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["client_id_metadata_document_supported"] is True
    assert doc["token_endpoint_auth_methods_supported"] == ["none"]
    assert "registration_endpoint" not in doc  # dynamic registration is off unless the operator enables it


def test_code_flow_with_totp_issues_an_mfa_token_verified_against_the_jwks(auth_server: AuthServer) -> None:
    auth_server.add_user("alice", totp=True)
    client_id, token = full_login(auth_server, "mfa-client", "alice")
    assert token["token_type"] == "Bearer" and token["expires_in"] == 300 and token["refresh_token"]
    header, claims = verified_claims(auth_server, token["access_token"])
    assert header["typ"] == "at+jwt" and header["alg"] == "RS256"
    assert header["kid"] in {k["kid"] for k in auth_server.jwks()["keys"]}
    assert claims["iss"] == auth_server.url
    assert claims["sub"] == auth_server.subject("alice") and claims["sub"] != "alice"
    assert claims["aud"] == RESOURCE
    assert claims["client_id"] == client_id
    assert claims["scope"] == "echotune:read echotune:write"
    assert claims["amr"] == ["pwd", "otp", "mfa"]
    assert claims["exp"] - claims["iat"] == 300 and len(claims["jti"]) >= 16


def test_password_only_user_gets_amr_pwd_and_refresh_rotation_detects_reuse(auth_server: AuthServer) -> None:
    auth_server.add_user("bob", totp=False)
    client_id, token = full_login(auth_server, "pwd-client", "bob")
    _, claims = verified_claims(auth_server, token["access_token"])
    assert claims["amr"] == ["pwd"]  # truthful: no second factor was used

    first = token["refresh_token"]
    rotated = refresh(auth_server, client_id, first)
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()["refresh_token"]
    assert second != first
    _, claims2 = verified_claims(auth_server, rotated.json()["access_token"])
    assert claims2["amr"] == ["pwd"] and claims2["aud"] == RESOURCE and claims2["sub"] == claims["sub"]

    reused = refresh(auth_server, client_id, first)  # a stolen copy of the old token
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    # reuse revoked the whole family: the legitimate newest token is dead too
    after = refresh(auth_server, client_id, second)
    assert after.status_code == 400 and after.json()["error"] == "invalid_grant"


def test_wrong_password_wrong_totp_and_a_replayed_totp_are_refused(auth_server: AuthServer) -> None:
    secret = auth_server.add_user("carol", totp=True)
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    client_id = auth_server.docs.add("refuse-client", [redirect_uri])
    _, challenge = pkce()
    url = f"{auth_server.url}/authorize?{urllib.parse.urlencode(authorize_params(client_id, redirect_uri, challenge))}"
    with httpx.Client(timeout=10) as browser:
        resp = sign_in(auth_server, browser, url, "carol", password="not the password")
        assert resp.status_code == 401 and "Wrong username or password" in resp.text and "location" not in resp.headers
        resp = sign_in(auth_server, browser, url, "nobody-such", password=PASSWORD)
        assert resp.status_code == 401 and "Wrong username or password" in resp.text  # no user enumeration
        wrong = f"{(int(pyotp.TOTP(secret).now()) + 1) % 1_000_000:06d}"
        resp = sign_in(auth_server, browser, url, "carol", otp=wrong)
        assert resp.status_code == 401 and "not valid" in resp.text and "location" not in resp.headers
        good = pyotp.TOTP(secret).now()
        assert sign_in(auth_server, browser, url, "carol", otp=good).status_code == 303
        replay = sign_in(auth_server, browser, url, "carol", otp=good)
        assert replay.status_code == 401  # a TOTP code works once


def test_pkce_is_required_s256_only_and_checked_and_codes_are_single_use(auth_server: AuthServer) -> None:
    auth_server.add_user("dave", totp=False)
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    client_id = auth_server.docs.add("pkce-client", [redirect_uri])
    verifier, challenge = pkce()
    with httpx.Client(timeout=10) as browser:
        for bad in ({"code_challenge_method": "plain", "code_challenge": verifier}, {"code_challenge": ""}):
            params = authorize_params(client_id, redirect_uri, challenge, **bad)
            resp = browser.get(f"{auth_server.url}/authorize?{urllib.parse.urlencode(params)}")
            assert resp.status_code == 303, resp.text  # redirect is validated, so the client hears the error
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(resp.headers["location"]).query)
            assert query["error"] == ["invalid_request"] and "code" not in query

        params = authorize_params(client_id, redirect_uri, challenge)
        resp = sign_in(auth_server, browser, f"{auth_server.url}/authorize?{urllib.parse.urlencode(params)}", "dave")
    code = code_from(resp, redirect_uri, params["state"], auth_server.url)
    wrong = exchange(auth_server, client_id, code, redirect_uri, pkce()[0])
    assert wrong.status_code == 400 and wrong.json()["error"] in ("invalid_grant", "invalid_request")
    # the failed attempt spent the code: not even the right verifier redeems it now
    again = exchange(auth_server, client_id, code, redirect_uri, verifier)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_code_replay_is_refused_and_revokes_what_the_code_gave(auth_server: AuthServer) -> None:
    auth_server.add_user("erin", totp=False)
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    client_id = auth_server.docs.add("replay-client", [redirect_uri])
    verifier, challenge = pkce()
    params = authorize_params(client_id, redirect_uri, challenge)
    with httpx.Client(timeout=10) as browser:
        resp = sign_in(auth_server, browser, f"{auth_server.url}/authorize?{urllib.parse.urlencode(params)}", "erin")
    code = code_from(resp, redirect_uri, params["state"], auth_server.url)
    first = exchange(auth_server, client_id, code, redirect_uri, verifier)
    assert first.status_code == 200
    second = exchange(auth_server, client_id, code, redirect_uri, verifier)
    assert second.status_code == 400 and second.json()["error"] == "invalid_grant"
    dead = refresh(auth_server, client_id, first.json()["refresh_token"])
    assert dead.status_code == 400  # RFC 6749 4.1.2: tokens from a replayed code are revoked


def test_client_metadata_document_and_resource_are_enforced(auth_server: AuthServer) -> None:
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    client_id = auth_server.docs.add("strict-client", [redirect_uri])
    _, challenge = pkce()
    with httpx.Client(timeout=10) as browser:
        # a redirect URI the document does not list: an error page here, never a redirect there
        params = authorize_params(client_id, "https://evil.example/cb", challenge)
        resp = browser.get(f"{auth_server.url}/authorize?{urllib.parse.urlencode(params)}")
        assert resp.status_code == 400 and "location" not in resp.headers
        # a client_id whose document does not exist
        params = authorize_params(client_id.replace("strict-client", "ghost"), redirect_uri, challenge)
        resp = browser.get(f"{auth_server.url}/authorize?{urllib.parse.urlencode(params)}")
        assert resp.status_code == 400 and "404" in resp.text
        # a resource this server does not issue tokens for (RFC 8707 invalid_target, told to the client)
        params = authorize_params(client_id, redirect_uri, challenge, resource="https://elsewhere.example/mcp")
        resp = browser.get(f"{auth_server.url}/authorize?{urllib.parse.urlencode(params)}")
        assert resp.status_code == 303
        assert urllib.parse.parse_qs(urllib.parse.urlsplit(resp.headers["location"]).query)["error"] == \
            ["invalid_target"]


def test_login_form_needs_its_csrf_cookie(auth_server: AuthServer) -> None:
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    client_id = auth_server.docs.add("csrf-client", [redirect_uri])
    _, challenge = pkce()
    params = authorize_params(client_id, redirect_uri, challenge)
    with httpx.Client(timeout=10) as browser:
        page = browser.get(f"{auth_server.url}/authorize?{urllib.parse.urlencode(params)}")
    txn, csrf = _field(page.text, "txn"), _field(page.text, "csrf")
    with httpx.Client(timeout=10) as attacker:  # a cross-site post carries no cookie of ours
        resp = attacker.post(f"{auth_server.url}/login", data={"txn": txn, "csrf": csrf, "username": "bob",
                                                               "password": PASSWORD})
    assert resp.status_code == 403 and "location" not in resp.headers


def test_failed_logins_are_rate_limited_per_user_and_address(auth_server: AuthServer) -> None:
    auth_server.add_user("frank", totp=False)
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    client_id = auth_server.docs.add("limit-client", [redirect_uri])
    _, challenge = pkce()
    url = f"{auth_server.url}/authorize?{urllib.parse.urlencode(authorize_params(client_id, redirect_uri, challenge))}"
    with httpx.Client(timeout=10) as browser:
        for _ in range(MAX_FAILURES):
            assert sign_in(auth_server, browser, url, "frank", password="guess " * 3).status_code == 401
        locked = sign_in(auth_server, browser, url, "frank")  # even the right password waits now
        assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 0
        assert sign_in(auth_server, browser, url, "bob").status_code == 303  # another user is not locked out


def test_key_rotation_publishes_both_keys_until_old_tokens_expire(auth_server: AuthServer) -> None:
    _, before = full_login(auth_server, "rotate-client-1", "bob")
    old_kid = verified_claims(auth_server, before["access_token"])[0]["kid"]
    proc = run_cli(auth_server.data_dir, "keys", "rotate")
    assert proc.returncode == 0, proc.stderr
    _, after = full_login(auth_server, "rotate-client-2", "bob")
    new_kid = verified_claims(auth_server, after["access_token"])[0]["kid"]
    assert new_kid != old_kid
    assert {old_kid, new_kid} <= {k["kid"] for k in auth_server.jwks()["keys"]}
    verified_claims(auth_server, before["access_token"])  # still verifies: the old key is still published
    assert all("d" not in k and "p" not in k for k in auth_server.jwks()["keys"])  # public parts only


def test_cli_user_add_and_reset_mfa(auth_server: AuthServer) -> None:
    auth_server.add_user("gina", totp=True)
    dup = run_cli(auth_server.data_dir, "user", "add", "gina", "--password-stdin", stdin=PASSWORD + "\n")
    assert dup.returncode == 2 and "exists" in dup.stderr
    weak = run_cli(auth_server.data_dir, "user", "add", "hank", "--password-stdin", stdin="short\n")
    assert weak.returncode == 2 and "password" in weak.stderr
    client_id, token = full_login(auth_server, "reset-client", "gina")
    assert verified_claims(auth_server, token["access_token"])[1]["amr"] == ["pwd", "otp", "mfa"]

    reset = run_cli(auth_server.data_dir, "user", "reset-mfa", "gina")
    assert reset.returncode == 0, reset.stderr
    # the refresh token from before the reset is revoked; the next sign-in is password only, and says so
    assert refresh(auth_server, client_id, token["refresh_token"]).status_code == 400
    _, token2 = full_login(auth_server, "reset-client-2", "gina")
    assert verified_claims(auth_server, token2["access_token"])[1]["amr"] == ["pwd"]

    again = run_cli(auth_server.data_dir, "user", "reset-mfa", "gina", "--totp")
    assert again.returncode == 0 and "otpauth://" in again.stdout
    assert run_cli(auth_server.data_dir, "user", "reset-mfa", "nobody").returncode == 2


async def test_its_tokens_work_at_the_mcp_server_and_amr_drives_step_up(auth_server: AuthServer,
                                                                       tmp_path: Path) -> None:
    """The real `serve --transport http` configured with this issuer: an MFA token may delete, a password-only
    token of the same scopes gets the RFC 9470 step-up challenge."""
    from tests.auth.conftest import mcp_http_client, start_server

    srv = start_server(tmp_path / "rs", None, {"ECHOTUNE_AUTH_ISSUER": auth_server.url,
                                               "ECHOTUNE_AUTH_AUDIENCE": RESOURCE})
    try:
        scopes = "echotune:read echotune:write echotune:providers"
        auth_server.add_user("ivy", totp=True)
        auth_server.add_user("jack", totp=False)
        _, mfa = full_login(auth_server, "rs-mfa", "ivy", scope=scopes)
        _, pwd = full_login(auth_server, "rs-pwd", "jack", scope=scopes)
        async with mcp_http_client(srv.mcp, mfa["access_token"]) as client:
            result = await client.call_tool("delete_artifact", {"artifact": "art_nonexistent"})
            assert result.is_error and "art_nonexistent" in result.content[0].text  # it ran: not found
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": "delete_artifact", "arguments": {"artifact": "art_nonexistent"}}}
        headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
        resp = httpx.post(srv.mcp, json=body, headers={**headers, "authorization": f"Bearer {pwd['access_token']}"},
                          timeout=30)
        assert resp.status_code == 401
        assert 'error="insufficient_user_authentication"' in resp.headers["www-authenticate"]
    finally:
        stop_process(srv.proc)


def test_state_file_is_private(auth_server: AuthServer) -> None:
    state = auth_server.data_dir / "auth-server"
    assert state.stat().st_mode & 0o777 == 0o700
    for f in state.iterdir():
        assert f.stat().st_mode & 0o077 == 0, f


# -- the MCP conformance suite's authorization-server scenarios ----------------------------------------------
@pytest.mark.slow
def test_conformance_authorization_server_scenarios(auth_server: AuthServer, node_tools: NodeTools,
                                                    tmp_path: Path) -> None:
    """``conformance authorization`` runs authorization-server-metadata-endpoint, then authorization-code-grant:
    it prints the authorization URL and waits for its callback; the test is the browser that signs in."""
    auth_server.add_user("conformance", totp=False)
    callback_port = free_port()
    client_id = auth_server.docs.add("conformance", [f"http://127.0.0.1:{callback_port}/callback"])
    results = tmp_path / "results"
    proc = subprocess.Popen(
        [str(node_tools.node), str(node_tools.conformance), "authorization", "--url", auth_server.url,
         "--client-id", client_id, "--resource", RESOURCE, "--port", str(callback_port), "--output-dir", str(results)],
        env=node_tools.env(), cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    output: list[str] = []
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        authorize_url = None
        deadline = time.monotonic() + 90
        while authorize_url is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                line = ANSI.sub("", lines.get(timeout=1))
            except queue.Empty:
                continue
            output.append(line)
            if line.strip().startswith(f"{auth_server.url}/authorize?"):
                authorize_url = line.strip()
        assert authorize_url, "the suite printed no authorization URL:\n" + "".join(output)[-3000:]

        with httpx.Client(timeout=10) as browser:
            resp = sign_in(auth_server, browser, authorize_url, "conformance")
            assert resp.status_code == 303, resp.text
            for _ in range(50):  # the suite's callback server listens before it prints, but be patient
                try:
                    assert browser.get(resp.headers["location"]).status_code == 200
                    break
                except httpx.ConnectError:
                    time.sleep(0.1)
        proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            stop_process(proc)
    while not lines.empty():
        output.append(ANSI.sub("", lines.get()))
    text = "".join(output)
    checks = [c for f in sorted(results.rglob("checks.json")) for c in json.loads(f.read_text())]
    statuses = {c["id"]: c["status"] for c in checks}
    assert statuses.get("authorization-server-metadata") == "SUCCESS", text[-3000:]
    assert statuses.get("authorization-server-metadata-cimd") == "SUCCESS", text[-3000:]
    assert statuses.get("authorization-code-grant") == "SUCCESS", text[-3000:]
    assert proc.returncode == 0, text[-3000:]


# -- in process: registration, client_id refusals, bounded fetches, bad forms --------------------------------
@pytest.fixture
def app_client(tmp_path: Path) -> Iterator[tuple[object, object]]:
    from dataclasses import replace

    from starlette.testclient import TestClient

    from echotune_mcp.auth.server.app import create_app
    from echotune_mcp.auth.server.settings import AuthServerSettings

    settings = replace(AuthServerSettings(state_dir=tmp_path / "auth-server", issuer="http://127.0.0.1:8780"),
                       dynamic_registration=True, resources=(RESOURCE,), secure_cookies=False)
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8780", follow_redirects=False) as client:
        yield client, settings


def test_dynamic_registration_accepts_public_clients_only(app_client) -> None:
    client, _ = app_client
    meta = client.get("/.well-known/oauth-authorization-server").json()
    assert meta["registration_endpoint"] == "http://127.0.0.1:8780/register"
    ok = client.post("/register", json={"client_name": "Desktop", "redirect_uris": ["http://127.0.0.1:7777/cb"],
                                        "grant_types": ["authorization_code", "refresh_token"]})
    assert ok.status_code == 201, ok.text
    client_id = ok.json()["client_id"]
    assert ok.json()["token_endpoint_auth_method"] == "none" and "client_secret" not in ok.json()
    _, challenge = pkce()
    params = authorize_params(client_id, "http://127.0.0.1:7777/cb", challenge)
    page = client.get(f"/authorize?{urllib.parse.urlencode(params)}")
    assert page.status_code == 200 and "Desktop" in page.text  # the registered client can start a sign-in

    for bad, field in (({"redirect_uris": ["javascript:alert(1)"]}, "redirect"),
                       ({"redirect_uris": ["http://evil.example/cb"]}, "redirect"),
                       ({"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "client_secret_basic"},
                        "public"),
                       ({"redirect_uris": ["https://a.example/cb"], "grant_types": ["implicit"]}, "grant_types"),
                       ({"redirect_uris": []}, "redirect_uris")):
        resp = client.post("/register", json=bad)
        assert resp.status_code == 400 and field in resp.json()["error_description"], (bad, resp.text)


def test_client_ids_that_point_inward_or_are_not_https_are_refused(tmp_path: Path) -> None:
    from echotune_mcp.auth.server.clients import ClientRefused, load_client
    from echotune_mcp.auth.server.settings import AuthServerSettings
    from echotune_mcp.auth.server.store import Store

    settings = AuthServerSettings(state_dir=tmp_path / "s", issuer="http://127.0.0.1:8780")
    store = Store(settings.state_dir)
    for client_id, why in (("https://127.0.0.1/client.json", "non-public"), ("https://10.1.2.3/c.json", "non-public"),
                           ("http://127.0.0.1:9/client.json", "https"),  # loopback documents are off by default
                           ("http://example.com/client.json", "https"), ("https://example.com", "path"),
                           ("not-a-registered-id", "unknown")):
        with pytest.raises(ClientRefused, match=why):
            load_client(store, settings, client_id)


def test_a_slow_metadata_document_is_abandoned_in_bounded_time(tmp_path: Path) -> None:
    from dataclasses import replace

    from echotune_mcp.auth.server.clients import ClientRefused, fetch_metadata_document
    from echotune_mcp.auth.server.settings import AuthServerSettings

    class Slow(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            time.sleep(5)

        def log_message(self, *args: object) -> None:
            pass

    port = free_port()
    httpd = ThreadingHTTPServer(("127.0.0.1", port), Slow)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        settings = replace(AuthServerSettings(state_dir=tmp_path / "s", issuer="http://127.0.0.1:8780"),
                           loopback_client_ids=True, cimd_timeout_s=0.5)
        start = time.monotonic()
        with pytest.raises(ClientRefused, match="cannot fetch"):
            fetch_metadata_document(f"http://127.0.0.1:{port}/client.json", settings)
        assert time.monotonic() - start < 3
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_oversized_or_non_form_bodies_are_refused(app_client) -> None:
    client, _ = app_client
    resp = client.post("/token", content=b"grant_type=authorization_code&code=" + b"x" * 100_000,
                       headers={"content-type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_request"
    resp = client.post("/token", json={"grant_type": "authorization_code"})
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_request"
    resp = client.post("/login", content=b"&".join(b"f%d=1" % i for i in range(100)),
                       headers={"content-type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 400


def test_deny_tells_the_client_and_a_step_up_request_needs_a_second_factor(auth_server: AuthServer) -> None:
    auth_server.add_user("kim", totp=False)
    auth_server.add_user("lee", totp=True)
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    client_id = auth_server.docs.add("deny-client", [redirect_uri])
    _, challenge = pkce()
    with httpx.Client(timeout=10) as browser:
        params = authorize_params(client_id, redirect_uri, challenge)
        page = browser.get(f"{auth_server.url}/authorize?{urllib.parse.urlencode(params)}")
        resp = browser.post(f"{auth_server.url}/login", data={"txn": _field(page.text, "txn"),
                                                              "csrf": _field(page.text, "csrf"), "action": "deny"})
        assert resp.status_code == 303
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(resp.headers["location"]).query)
        assert query["error"] == ["access_denied"] and query["state"] == [params["state"]] and "code" not in query

        # the resource server's RFC 9470 challenge asks for acr_values=mfa: a password-only account cannot pass
        params = authorize_params(client_id, redirect_uri, challenge, acr_values="mfa")
        url = f"{auth_server.url}/authorize?{urllib.parse.urlencode(params)}"
        resp = sign_in(auth_server, browser, url, "kim")
        assert resp.status_code == 403 and "second factor" in resp.text and "location" not in resp.headers
        assert sign_in(auth_server, browser, url, "lee").status_code == 303  # with TOTP it passes
