"""Destructive calls ask the person first (confirm.py): by the 2026-07-28 multi-round-trip flow, by a mid-call
elicitation on older clients, or -- for a client that cannot be asked -- only with confirm=true.

The playlist is the scripted Spotify of tests/providers (a stateful loopback API), so every test can see what
was and was not written.
"""

from __future__ import annotations

from contextlib import asynccontextmanager, contextmanager
from dataclasses import replace

import pytest
from mcp import Client
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.shared.exceptions import MCPError
from mcp_types import ElicitRequest, ElicitResult, InputRequiredResult

from echotune_mcp.app import App
from echotune_mcp.auth.context import LOCAL, VerifiedToken
from echotune_mcp.server import build_server
from tests.providers.conftest import LoopbackAPI
from tests.providers.fake_spotify import FakeSpotify, sid, track

CATALOGUE = [
    track("a1", "So What", "Miles Davis", "USSM15900113"),
    track("a2", "Blue in Green", "Miles Davis", "USSM15900114"),
    track("b1", "Take Five", "Dave Brubeck", "USSM15900200"),
    track("c1", "Naima", "John Coltrane", None, 262_000),
]


@pytest.fixture
def fake():
    fs = FakeSpotify(CATALOGUE)
    api = LoopbackAPI(fs)
    fs.base = api.base
    yield fs
    api.close()


class Person:
    """An elicitation callback that answers as told and remembers each question."""

    def __init__(self, action: str = "accept", confirmed: bool = True):
        self.action, self.confirmed = action, confirmed
        self.asked: list[str] = []

    async def __call__(self, _ctx, params) -> ElicitResult:
        self.asked.append(params.message)
        if self.action != "accept":
            return ElicitResult(action=self.action)
        return ElicitResult(action="accept", content={"confirmed": self.confirmed})


@asynccontextmanager
async def client_for(settings, fake, person: Person | None = None, mode: str = "auto"):
    app = App(replace(settings, spotify_token="tok", spotify_api_base=fake.base))
    async with app, Client(build_server(app), raise_exceptions=True, elicitation_callback=person,
                           mode=mode) as client:
        yield client, app


def text_of(result) -> str:
    return " ".join(b.text for b in result.content if getattr(b, "type", "") == "text")


@contextmanager
def as_user(sub: str):
    token = VerifiedToken(token="t", client_id="cli", scopes=["echotune:read", "echotune:write"], subject=sub,
                          issuer="https://idp.example", amr=["pwd", "otp"])
    reset = auth_context_var.set(AuthenticatedUser(token))
    try:
        yield
    finally:
        auth_context_var.reset(reset)


# -- a client that supports elicitation (2026-07-28: InputRequiredResult) ------------------------------------


async def test_accept_removes_and_keeps_a_snapshot(settings, fake):
    pl = fake.make("pl", ["a1", "b1", "a1", "c1"])
    person = Person()
    async with client_for(settings, fake, person) as (client, _):
        assert client.protocol_version == "2026-07-28"
        r = await client.call_tool("remove_tracks", {"provider": "spotify", "playlist_id": pl,
                                                      "track_ids": [sid("a1")]})
        assert not r.is_error, text_of(r)
        assert fake.names(pl) == ["b1", "c1"]
        (question,) = person.asked
        assert "remove 2 item(s)" in question and pl in question and "So What - Miles Davis (position 1)" in question
        assert "restore_playlist" in question
        data = r.structured_content
        assert data["changed"] == 2 and "confirmed by the person" in data["message"]
        # the snapshot taken before the change puts it back
        r = await client.call_tool("restore_playlist", {"provider": "spotify", "playlist_id": pl,
                                                         "snapshot": data["snapshot"]})
        assert not r.is_error, text_of(r)
        assert fake.names(pl) == ["a1", "b1", "a1", "c1"]


@pytest.mark.parametrize("action,confirmed,says", [("decline", True, "declined"), ("cancel", True, "cancelled"),
                                                    ("accept", False, "answered no")])
async def test_decline_cancel_or_no_changes_nothing(settings, fake, action, confirmed, says):
    pl = fake.make("pl", ["a1", "a2", "a1", "b1"])
    person = Person(action, confirmed)
    async with client_for(settings, fake, person) as (client, _):
        for tool, args in [("remove_tracks", {"track_ids": [sid("b1")]}), ("dedupe_playlist", {}),
                           ("reorder_playlist", {"by": "artist_spread"})]:
            r = await client.call_tool(tool, {"provider": "spotify", "playlist_id": pl, **args})
            assert r.is_error, tool
            assert f"{tool} changed nothing" in text_of(r) and says in text_of(r)
        assert len(person.asked) == 3
        assert "remove 1 repeated item(s)" in person.asked[1] and "position 3" in person.asked[1]
        assert "reorder" in person.asked[2] and "move(s)" in person.asked[2]
    assert fake.names(pl) == ["a1", "a2", "a1", "b1"] and fake.writes == []


async def test_nothing_to_change_asks_nothing(settings, fake):
    pl = fake.make("pl", ["a1", "b1"])
    person = Person("decline")
    async with client_for(settings, fake, person) as (client, _):
        r = await client.call_tool("remove_tracks", {"provider": "spotify", "playlist_id": pl,
                                                      "track_ids": [sid("c1")]})
        assert not r.is_error and r.structured_content["not_in_playlist"] == [sid("c1")]
        r = await client.call_tool("dedupe_playlist", {"provider": "spotify", "playlist_id": pl})
        assert not r.is_error and r.structured_content["changed"] == 0
    assert person.asked == []


async def test_confirm_true_is_not_asked_again(settings, fake):
    pl = fake.make("pl", ["a1", "a1", "b1"])
    person = Person("decline")
    async with client_for(settings, fake, person) as (client, _):
        r = await client.call_tool("dedupe_playlist", {"provider": "spotify", "playlist_id": pl, "confirm": True})
        assert not r.is_error, text_of(r)
        assert "(confirm=true)" in r.structured_content["message"]
    assert person.asked == [] and fake.names(pl) == ["a1", "b1"]


async def test_request_state_is_bound_to_the_arguments_and_the_principal(settings, fake):
    pl = fake.make("pl", ["a1", "b1", "c1"])
    args = {"provider": "spotify", "playlist_id": pl, "track_ids": [sid("a1")]}
    async with client_for(settings, fake, Person()) as (client, _):
        first = await client.session.call_tool("remove_tracks", args, allow_input_required=True)
        assert isinstance(first, InputRequiredResult) and first.request_state
        ((key, request),) = first.input_requests.items()
        assert isinstance(request, ElicitRequest)
        assert request.params.requested_schema["properties"]["confirmed"]["type"] == "boolean"
        yes = {key: ElicitResult(action="accept", content={"confirmed": True})}

        async def retry(arguments, state=first.request_state):
            return await client.session.call_tool("remove_tracks", arguments, input_responses=yes,
                                                  request_state=state, allow_input_required=True)

        # the answer to "remove a1?" cannot be spent on removing something else
        with pytest.raises(MCPError, match="Invalid or expired requestState"):
            await retry({**args, "track_ids": [sid("b1")]})
        with pytest.raises(MCPError, match="Invalid or expired requestState"):
            await retry({**args, "confirm": False})  # the exact arguments, not just the same effect
        # nor by another principal, nor altered
        with as_user("mallory"), pytest.raises(MCPError, match="Invalid or expired requestState"):
            await retry(args)
        tampered = first.request_state[:-4] + ("AAAA" if not first.request_state.endswith("AAAA") else "BBBB")
        with pytest.raises(MCPError, match="Invalid or expired requestState"):
            await retry(args, tampered)
        assert fake.names(pl) == ["a1", "b1", "c1"]
        # the question's own retry goes through
        done = await retry(args)
        assert not done.is_error, text_of(done)
        assert fake.names(pl) == ["b1", "c1"]


async def test_answer_to_a_changed_playlist_is_asked_again(settings, fake):
    pl = fake.make("pl", ["a1", "b1"])
    args = {"provider": "spotify", "playlist_id": pl, "track_ids": [sid("a1")]}
    async with client_for(settings, fake, Person()) as (client, _):
        first = await client.session.call_tool("remove_tracks", args, allow_input_required=True)
        ((key, _),) = first.input_requests.items()
        fake.make("pl", ["a1", "b1", "a1"])  # someone added another copy meanwhile: the question changed
        again = await client.session.call_tool(
            "remove_tracks", args, input_responses={key: ElicitResult(action="accept", content={"confirmed": True})},
            request_state=first.request_state, allow_input_required=True)
        assert isinstance(again, InputRequiredResult)
        assert "remove 2 item(s)" in next(iter(again.input_requests.values())).params.message
    assert fake.names(pl) == ["a1", "b1", "a1"]


# -- a pre-2026 client that supports elicitation: asked mid-call (ctx.elicit) -----------------------------


async def test_legacy_client_is_asked_mid_call(settings, fake):
    pl = fake.make("pl", ["a1", "b1", "c1"])
    person = Person()
    async with client_for(settings, fake, person, mode="legacy") as (client, _):
        assert client.protocol_version != "2026-07-28"
        r = await client.call_tool("reorder_playlist", {"provider": "spotify", "playlist_id": pl,
                                                         "order": [sid("c1"), sid("a1"), sid("b1")]})
        assert not r.is_error, text_of(r)
        assert fake.names(pl) == ["c1", "a1", "b1"]
        assert len(person.asked) == 1 and "Naima - John Coltrane: position 3 -> 1" in person.asked[0]
        person.action = "decline"
        r = await client.call_tool("remove_tracks", {"provider": "spotify", "playlist_id": pl,
                                                      "track_ids": [sid("a1")]})
        assert r.is_error and "declined" in text_of(r)
    assert fake.names(pl) == ["c1", "a1", "b1"]


# -- a client that cannot be asked: confirm=true ---------------------------------------------------------


async def test_without_elicitation_confirm_is_required(settings, fake):
    pl = fake.make("pl", ["a1", "a2", "b1", "a1"])
    async with client_for(settings, fake) as (client, _):
        r = await client.call_tool("remove_tracks", {"provider": "spotify", "playlist_id": pl,
                                                      "track_ids": [sid("a1")]})
        assert r.is_error
        msg = text_of(r)
        assert "remove_tracks changed nothing: confirmation required" in msg and "confirm=true" in msg
        assert "remove 2 item(s)" in msg and "So What - Miles Davis (position 4)" in msg
        r = await client.call_tool("reorder_playlist", {"provider": "spotify", "playlist_id": pl,
                                                         "order": [sid("a2"), sid("a1"), sid("b1"), sid("a1")]})
        assert r.is_error and "confirm=true" in text_of(r) and "position 2 -> 1" in text_of(r)
        assert fake.names(pl) == ["a1", "a2", "b1", "a1"] and fake.writes == []
        r = await client.call_tool("remove_tracks", {"provider": "spotify", "playlist_id": pl,
                                                      "track_ids": [sid("a1")], "confirm": True})
        assert not r.is_error, text_of(r)
        assert fake.names(pl) == ["a2", "b1"] and r.structured_content["snapshot"]


# -- delete_artifact: a leaf goes at once, a parent needs a yes ------------------------------------------


async def _family(app):
    parent = await app.artifacts.create(owner=LOCAL, data=b'{"a": 1}', kind="json", media_type="application/json",
                                        name="parent.json")
    child = await app.artifacts.create(owner=LOCAL, data=b'{"b": 2}', kind="json", media_type="application/json",
                                       name="child.json", parents=[parent.id])
    return parent, child


async def test_delete_artifact_asks_only_for_a_parent(settings, fake):
    person = Person("decline")
    async with client_for(settings, fake, person) as (client, app):
        parent, child = await _family(app)
        r = await client.call_tool("delete_artifact", {"artifact": parent.id})
        assert r.is_error and "declined" in text_of(r)
        assert child.id in person.asked[0] and "child.json" in person.asked[0]
        assert await app.storage.artifacts.get(LOCAL, parent.id) is not None
        r = await client.call_tool("delete_artifact", {"artifact": child.id})  # a leaf: nobody is asked
        assert not r.is_error and len(person.asked) == 1
        person.action = "accept"
        r = await client.call_tool("delete_artifact", {"artifact": parent.id})  # no children left now
        assert not r.is_error and len(person.asked) == 1
        assert await app.storage.artifacts.get(LOCAL, parent.id) is None


async def test_delete_artifact_without_elicitation(settings, fake):
    async with client_for(settings, fake) as (client, app):
        parent, child = await _family(app)
        r = await client.call_tool("delete_artifact", {"artifact": parent.id})
        assert r.is_error
        assert "confirmation required" in text_of(r) and child.id in text_of(r) and "confirm=true" in text_of(r)
        assert await app.storage.artifacts.get(LOCAL, parent.id) is not None
        r = await client.call_tool("delete_artifact", {"artifact": parent.id, "confirm": True})
        assert not r.is_error, text_of(r)
        assert await app.storage.artifacts.get(LOCAL, parent.id) is None
        assert (await app.storage.artifacts.get(LOCAL, child.id)).parents == [parent.id]


# -- transfer_playlist: a new playlist goes at once, appending to an existing one needs a yes ---------------


async def test_transfer_into_an_existing_playlist(settings, fake):
    src = fake.make("src", ["a1", "b1"])
    dst = fake.make("dst", ["c1"])
    person = Person("decline")
    base = {"from_provider": "spotify", "playlist_id": src, "to_provider": "spotify"}
    async with client_for(settings, fake, person) as (client, _):
        r = await client.call_tool("transfer_playlist", {**base, "name": "Copy"})  # a new playlist: not asked
        assert not r.is_error and r.structured_content["into_existing"] is False and person.asked == []
        assert fake.created == 1
        r = await client.call_tool("transfer_playlist", {**base, "into_playlist_id": dst})
        assert r.is_error and "declined" in text_of(r)
        (question,) = person.asked
        assert "to the end of your existing spotify playlist" in question and dst in question
        assert "Take Five - Dave Brubeck" in question
        assert fake.names(dst) == ["c1"]
        person.action = "accept"
        r = await client.call_tool("transfer_playlist", {**base, "into_playlist_id": dst})
        assert not r.is_error, text_of(r)
        data = r.structured_content
        assert data["into_existing"] is True and data["playlist"]["id"] == dst and data["playlist"]["track_count"] == 3
        assert fake.names(dst) == ["c1", "a1", "b1"] and fake.created == 1  # appended; nothing new created
        r = await client.call_tool("transfer_playlist", {**base, "into_playlist_id": dst, "name": "x"})
        assert r.is_error and "name/into_playlist_id" in text_of(r)


async def test_transfer_into_existing_without_elicitation(settings, fake):
    src = fake.make("src", ["a1"])
    dst = fake.make("dst", ["c1"])
    base = {"from_provider": "spotify", "playlist_id": src, "to_provider": "spotify", "into_playlist_id": dst}
    async with client_for(settings, fake) as (client, _):
        r = await client.call_tool("transfer_playlist", base)
        assert r.is_error and "confirmation required" in text_of(r) and "So What - Miles Davis" in text_of(r)
        assert fake.names(dst) == ["c1"] and fake.writes == []
        r = await client.call_tool("transfer_playlist", {**base, "confirm": True})
        assert not r.is_error, text_of(r)
        assert fake.names(dst) == ["c1", "a1"]


async def test_only_a_confirmed_deletion_is_audited(settings, fake):
    """The question round (InputRequiredResult) and a declined call delete nothing, so they are not audited."""
    from echotune_mcp.auth.audit import entries

    person = Person("decline")
    async with client_for(settings, fake, person) as (client, app):
        parent, _ = await _family(app)
        first = await client.session.call_tool("delete_artifact", {"artifact": parent.id}, allow_input_required=True)
        assert isinstance(first, InputRequiredResult)
        assert (await entries(app, LOCAL, event="deletion"))[0] == []
        assert (await client.call_tool("delete_artifact", {"artifact": parent.id})).is_error  # declined
        assert (await entries(app, LOCAL, event="deletion"))[0] == []
        person.action = "accept"
        assert not (await client.call_tool("delete_artifact", {"artifact": parent.id})).is_error
        (entry,), _ = await entries(app, LOCAL, event="deletion")
        assert parent.id in entry.fields["arguments"]


async def test_legacy_question_is_bounded(settings, fake, monkeypatch):
    """A pre-2026 client that never answers cannot hold the call open: after ASK_TIMEOUT_S nothing is changed."""
    import anyio

    from echotune_mcp import confirm

    monkeypatch.setattr(confirm, "ASK_TIMEOUT_S", 0.5)
    pl = fake.make("pl", ["a1", "a1"])

    async def silent(_ctx, _params):
        await anyio.sleep(3)
        return ElicitResult(action="accept", content={"confirmed": True})

    async with client_for(settings, fake, silent, mode="legacy") as (client, _):
        with anyio.fail_after(10):
            r = await client.call_tool("dedupe_playlist", {"provider": "spotify", "playlist_id": pl})
        assert r.is_error and "no answer within 0.5 s" in text_of(r), text_of(r)
    assert fake.names(pl) == ["a1", "a1"]
