"""Tenants: local files, provider credentials and quotas are per principal; the operator's CLI grants them.

Calls run in-process with the caller set the way the HTTP auth layer sets it (the SDK's auth context variable,
copied into the task that serves the request), so every tool sees the same principal it would over HTTP.
"""

from __future__ import annotations

import base64
import io
import os
import stat
import wave
from contextlib import contextmanager

import pytest
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser

from echotune_mcp.auth.audit import entries
from echotune_mcp.auth.context import LOCAL, VerifiedToken, principal_for
from echotune_mcp.auth.tenants import TenantStore, principals_main
from echotune_mcp.providers.hub import ProviderHub

ALICE = principal_for("https://idp.example", "alice")
BOB = principal_for("https://idp.example", "bob")


@contextmanager
def as_user(sub: str):
    token = VerifiedToken(token="t", client_id="cli", scopes=["echotune:read", "echotune:write"], subject=sub,
                          issuer="https://idp.example", amr=["pwd", "otp"])
    reset = auth_context_var.set(AuthenticatedUser(token))
    try:
        yield principal_for("https://idp.example", sub)
    finally:
        auth_context_var.reset(reset)


def wav_bytes(seconds: float = 0.2, rate: int = 8000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x01" * int(seconds * rate))
    return buf.getvalue()


async def cli(*argv: str) -> int:
    """``echotune-mcp principals ...`` as the operator runs it (its own event loop, so in a thread here)."""
    import anyio

    return await anyio.to_thread.run_sync(principals_main, list(argv))


def text_of(result) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


async def test_remote_principal_reads_no_local_file_until_an_operator_grants_a_root(make_client, settings, tmp_path):
    song = settings.allowed_roots[0] / "take.wav"
    song.write_bytes(wav_bytes())
    async with make_client() as (client, app):
        # The local user (stdio) reads files inside ECHOTUNE_ALLOWED_ROOTS, as before.
        ok = await client.call_tool("import_listening_history", {"paths": [str(song)]})
        assert "outside the allowed roots" not in text_of(ok)
        with as_user("alice"):
            refused = await client.call_tool("import_listening_history", {"paths": [str(song)]})
            assert refused.is_error
            msg = text_of(refused)
            assert "outside the allowed roots" in msg and "principals grant-roots" in msg, msg
            assert str(settings.allowed_roots[0]) not in msg.split("outside")[1]  # the local roots are not shown

    # The operator grants Alice a folder of her own (not the local user's).
    hers = tmp_path / "alice-music"
    hers.mkdir()
    (hers / "take.wav").write_bytes(wav_bytes())
    data_dir = ["--data-dir", str(settings.data_dir)]
    assert await cli(*[*data_dir, "grant-roots", ALICE, str(hers)]) == 0
    async with make_client() as (client, app):
        policy = await app.path_policy(ALICE)
        assert policy.roots == (hers.resolve(),)
        assert (await app.path_policy(BOB)).roots == ()
        assert (await app.path_policy(LOCAL)).roots == tuple(r.resolve() for r in settings.allowed_roots)
        assert policy.check(str(hers / "take.wav")) == (hers / "take.wav").resolve()
        with as_user("alice"):
            res = await client.call_tool("import_listening_history", {"paths": [str(song)]})
            assert res.is_error and "outside the allowed roots" in text_of(res)  # the local root is not hers
        with as_user("bob"):
            res = await client.call_tool("import_listening_history", {"paths": [str(hers / "take.wav")]})
            assert res.is_error and "outside the allowed roots" in text_of(res)
        granted, _ = await entries(app, ALICE, event="roots_granted")
        assert granted and granted[0].fields["roots"] == [str(hers.resolve())]
        assert await entries(app, BOB) == ([], None)
    assert await cli(*[*data_dir, "revoke-roots", ALICE, str(hers)]) == 0
    async with make_client() as (client, app):
        assert (await app.path_policy(ALICE)).roots == ()
        assert [e.event for e in (await entries(app, ALICE))[0]] == ["roots_revoked", "roots_granted"]


def test_grant_roots_refuses_what_is_not_an_absolute_folder(settings, tmp_path, capsys):
    data_dir = ["--data-dir", str(settings.data_dir)]
    assert principals_main([*data_dir, "grant-roots", ALICE, "relative/dir"]) == 2
    assert "not an absolute path" in capsys.readouterr().err
    f = tmp_path / "file.txt"
    f.write_text("x")
    assert principals_main([*data_dir, "grant-roots", ALICE, str(f)]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert principals_main([*data_dir, "list"]) == 0
    assert "no principal has granted roots" in capsys.readouterr().out
    assert principals_main(["id", "https://idp.example", "alice"]) == 0
    assert capsys.readouterr().out.strip() == ALICE  # how an operator names a user to grant roots to


async def test_environment_credentials_serve_the_local_principal_only(make_client, tmp_path):
    auth_file = tmp_path / "browser.json"
    auth_file.write_text("{}")
    async with make_client(spotify_token="operator-token", ytmusic_auth_file=auth_file) as (client, app):
        hub = ProviderHub(app)
        local = {s.provider: s for s in await hub.status(LOCAL)}
        assert local["spotify"].source == "env_token" and local["ytmusic"].source == "auth_file"
        assert (await hub.connect(LOCAL, "spotify")).status == "connected"
        remote = {s.provider: s for s in await hub.status(ALICE)}
        assert not remote["spotify"].connected and remote["spotify"].source == "none"
        assert not remote["ytmusic"].connected
        assert "operator" in remote["ytmusic"].message
        assert (await hub.provider(LOCAL, "ytmusic"))._authed  # the operator's library, for the operator
        assert not (await hub.provider(ALICE, "ytmusic"))._authed  # Alice gets search and radio, not that library
        from echotune_mcp.providers.base import NotConnected

        with pytest.raises(NotConnected):
            await hub.provider(ALICE, "spotify")  # the operator's token is not Alice's account
        yt = (await hub.connect(ALICE, "ytmusic"))
        assert yt.status == "not_configured"


async def test_storage_quota_refuses_an_artifact_over_it_naming_quota_and_usage(make_client, settings):
    data = wav_bytes(0.5)
    up = {"data_base64": base64.b64encode(data).decode(), "filename": "a.wav"}
    async with make_client() as (client, app):
        with as_user("alice"):
            assert not (await client.call_tool("import_audio", up)).is_error
            one = (await client.call_tool("my_limits", {})).structured_content["storage_used_bytes"]
            assert one > len(data)  # the upload and its signed content-credentials manifest
    quota = one + len(data) + 10  # room for one more upload (its manifest is never refused), not two
    assert await cli("--data-dir", str(settings.data_dir), "set", ALICE, "--storage-quota-bytes", str(quota)) == 0
    async with make_client() as (client, app):
        with as_user("alice"):
            assert not (await client.call_tool("import_audio", up)).is_error
            used = (await client.call_tool("my_limits", {})).structured_content["storage_used_bytes"]
            assert used == 2 * one
            refused = await client.call_tool("import_audio", up)
            assert refused.is_error
            msg = text_of(refused)
            assert f"use {used} bytes of its {quota}-byte quota" in msg, msg
            assert f"the new one is {len(data)} bytes" in msg
            listed = await client.call_tool("list_artifacts", {"limit": 100})
            assert len(listed.structured_content["artifacts"]) == 4  # two uploads, two manifests: nothing half-stored
            limits = (await client.call_tool("my_limits", {})).structured_content
            assert limits["storage_used_bytes"] == used and limits["storage_quota_bytes"] == quota
            assert limits["local_roots"] == []
        with as_user("bob"):  # another principal's quota is its own (the server default)
            assert not (await client.call_tool("import_audio", up)).is_error
            limits = (await client.call_tool("my_limits", {})).structured_content
            assert limits["storage_used_bytes"] == one
            assert limits["storage_quota_bytes"] == settings.storage_quota_bytes
        # The local user has no quota unless an operator sets one.
        assert not (await client.call_tool("import_audio", up)).is_error
        assert (await client.call_tool("my_limits", {})).structured_content["storage_quota_bytes"] is None
        refusals, _ = await entries(app, ALICE, event="quota_refused")
        assert len(refusals) == 1 and refusals[0].fields["used"] == used and refusals[0].fields["limit"] == quota


async def test_job_quota_is_per_principal_and_overridable(make_client, settings):
    assert await cli(*["--data-dir", str(settings.data_dir), "set", ALICE, "--max-jobs", "1"]) == 0
    async with make_client() as (client, app):
        from echotune_mcp.auth.tenants import job_limit

        assert await job_limit(app, ALICE) == 1
        assert await job_limit(app, BOB) == settings.max_jobs_per_owner
        with as_user("alice"):
            limits = (await client.call_tool("my_limits", {})).structured_content
            assert limits["max_concurrent_jobs"] == 1 and limits["principal"] == ALICE
        record = await TenantStore(app).of(ALICE)
        assert record is not None and record.max_jobs == 1 and record.owner == ALICE
        changed, _ = await entries(app, ALICE, event="principal_settings_changed")
        assert changed[0].fields == {"by": "operator", "max_jobs": 1}  # the operator's change is audited
        import asyncio

        from echotune_mcp.errors import Busy

        gate = asyncio.Event()

        async def wait_gate(job):
            await gate.wait()
            return {}

        first = await app.jobs.submit(owner=ALICE, tool="t", params={}, work=wait_gate)
        with pytest.raises(Busy, match=r"already has 1 jobs .* \(limit 1 concurrent jobs for this principal\)"):
            await app.jobs.submit(owner=ALICE, tool="t", params={}, work=wait_gate)
        for _ in range(2):  # Bob's limit is the server's (4), untouched by Alice's override
            await app.jobs.submit(owner=BOB, tool="t", params={}, work=wait_gate)
        gate.set()
        await app.jobs.wait(ALICE, first.id, 5)
        assert await TenantStore(app).of(BOB) is None
    assert await cli(*["--data-dir", str(settings.data_dir), "set", ALICE, "--max-jobs", "default"]) == 0
    async with make_client() as (client, app):
        from echotune_mcp.auth.tenants import job_limit

        assert await job_limit(app, ALICE) == settings.max_jobs_per_owner


def test_principal_settings_live_in_the_private_database(settings):
    assert principals_main(["--data-dir", str(settings.data_dir), "set", ALICE, "--max-jobs", "2"]) == 0
    db = settings.data_dir / "echotune.sqlite3"
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(settings.data_dir).st_mode) == 0o700


async def test_provider_grants_removed_are_audited_for_their_owner(make_client):
    async with make_client() as (client, app):
        hub = ProviderHub(app)
        await hub.keeper.save(ALICE, "spotify", {"access_token": "a", "refresh_token": "r", "expires_at": 9e9,
                                                 "scope": "playlist-modify-private"})
        assert await hub.disconnect(ALICE, "spotify") == (False, True)  # no revoke endpoint; deleted here
        assert await hub.disconnect(ALICE, "spotify") == (False, False)  # nothing left: nothing audited
        recs, _ = await entries(app, ALICE)
        assert [(r.event, r.fields["provider"]) for r in recs] == [("grant_removed", "spotify")]
        assert "a" not in recs[0].fields.values() and "r" not in recs[0].fields.values()  # never a secret
        assert await entries(app, LOCAL) == ([], None)


@pytest.mark.parametrize("backend", ["sqlite", "mongodb"])
async def test_settings_audit_and_usage_on_both_backends(backend, settings, request):
    import time
    import uuid
    from dataclasses import replace

    from echotune_mcp.app import App
    from echotune_mcp.auth.audit import audit
    from echotune_mcp.auth.tenants import grant_roots, revoke_roots, storage_usage

    if backend == "mongodb":
        settings = replace(settings, mongodb_uri=request.getfixturevalue("mongo_uri"),
                           mongodb_db=f"t_{uuid.uuid4().hex[:10]}")
    async with App(settings) as app:
        assert app.storage.backend.name == backend
        store = TenantStore(app)
        await store.change(ALICE, max_jobs=3)
        rec, added = await grant_roots(app, ALICE, [str(settings.allowed_roots[0])])
        assert added and rec.max_jobs == 3  # a later change keeps the earlier fields
        rec, removed = await revoke_roots(app, ALICE, [str(settings.allowed_roots[0])])
        assert removed == added and rec.roots == [] and rec.max_jobs == 3
        assert [r.owner for r in await store.all()] == [ALICE]
        await app.artifacts.create(owner=ALICE, data=b"x" * 100, kind="json", media_type="application/json",
                                   name="a.json")
        await app.artifacts.create(owner=BOB, data=b"y" * 70, kind="json", media_type="application/json",
                                   name="b.json")
        assert await storage_usage(app, ALICE) == 100 and await storage_usage(app, BOB) == 70
        await app.storage.collection("audit").insert(
            {"id": "aud_old", "owner": ALICE, "created_at": time.time() - 10, "expires_at": time.time() - 1,
             "event": "grant_added", "fields": {}})
        await audit(app, "grant_added", principal=BOB, provider="spotify")
        assert [r.event for r in (await entries(app, ALICE))[0]] == ["roots_revoked", "roots_granted"]
        assert [r.event for r in (await entries(app, BOB))[0]] == ["grant_added"]
        assert await app.storage.collection("audit").purge_expired() == 1
