"""curate_playlist through the MCP client: sequencing with corpus audio features, proposal vs create, resuming a
cut-off create with the first call's choice, duration targets, bad input. Real tracks (a TidyTuesday subset)
on a stateful Spotify stand-in at the HTTP boundary."""

from __future__ import annotations

import csv

import pytest
from scipy.stats import spearmanr

from echotune_mcp.recommend.corpus import add_corpus, corpora_dir
from tests.conftest import shared_path
from tests.providers.conftest import loopback_api  # noqa: F401 (the loopback server fixture)
from tests.providers.fake_spotify import FakeSpotify
from tests.providers.test_curation_tools import call, curation_client, text_of

LICENCE = "TidyTuesday 2020-01-21 sample: non-commercial research"


def remix_rows(n: int = 40) -> list[dict]:
    """The first ``n`` distinct remixes of the TidyTuesday songs (real ids, titles and audio features)."""
    path = shared_path("data", "recsys", "tidytuesday_spotify_songs_2020", "spotify_songs_part1.csv")
    out: dict[str, dict] = {}
    with path.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            if "remix" in row["track_name"].lower() and row["track_id"] not in out:
                out[row["track_id"]] = row
            if len(out) == n:
                break
    return list(out.values())


def as_fake(row: dict) -> dict:
    tid = row["track_id"]
    return {"id": tid, "uri": f"spotify:track:{tid}", "type": "track", "name": row["track_name"],
            "artists": [{"name": row["track_artist"]}], "duration_ms": int(row["duration_ms"]), "explicit": False,
            "external_ids": {}, "album": {"name": row["track_album_name"], "release_date": "2019-01-01"},
            "external_urls": {"spotify": f"https://open.spotify.com/track/{tid}"}}


@pytest.fixture
def rows(settings, tmp_path):
    rows = remix_rows()
    path = tmp_path / "remixes.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    add_corpus(corpora_dir(settings), [path], "playlists", LICENCE, name="remixes")
    return {r["track_id"]: r for r in rows}


@pytest.fixture
def fake(loopback_api, rows):
    fs = FakeSpotify([as_fake(r) for r in rows.values()])
    fs.api = loopback_api(fs)
    fs.base = fs.api.base
    return fs


async def test_proposal_is_sequenced_with_corpus_features(settings, rows, fake):
    async with curation_client(settings, spotify_token="tok", spotify_api_base=fake.base) as (client, _):
        r, data = await call(client, "curate_playlist", provider="spotify", prompt="remix", length=10, arc="rise",
                             use_history=False, create=False)
        assert not r.is_error, text_of(r)
    assert data["playlist"] is None and fake.created == 0 and not fake.writes
    # use_history=false: the user's library (top, saved, recent) was not read either
    assert not [path for _, path, _ in fake.api.requests if path.startswith(("/me/top", "/me/tracks", "/me/player"))]
    tracks = data["tracks"]
    assert [t["position"] for t in tracks] == list(range(1, 11))
    # features came from the corpus rows of the same Spotify ids, and the corpus licence is reported
    for t in tracks:
        row = rows[t["track"]["id"]]
        assert t["energy"] == pytest.approx(float(row["energy"])) and t["tempo_bpm"] == pytest.approx(float(row["tempo"]))
        assert t["key"] and t["source"] == "provider:search" and f"energy {t['energy']:.2f}" in t["why"]
    assert data["licences"] == [LICENCE]
    energies = [t["energy"] for t in tracks]
    assert spearmanr(energies, [t["target_energy"] for t in tracks]).statistic > 0.8
    assert sum(energies[:3]) < sum(energies[-3:])
    # one lead artist at most max_per_artist (default 2) times
    leads = [t["track"]["artists"][0] for t in tracks]
    assert max(leads.count(a) for a in leads) <= 2
    # what was not used says why: no fitted model, so the fallback sources chose
    assert data["model"] is None and any(x.startswith("recommender:") for x in data["ignored"])
    assert data["target"] == "10 track(s), rise energy arc" and "nothing was written" in data["message"]


async def test_create_resumes_with_the_first_calls_choice(settings, rows, fake):
    async with curation_client(settings, spotify_token="tok", spotify_api_base=fake.base) as (client, _):
        fake.fail_writes_after = 0   # the playlist is created, then adding its tracks fails
        r, _ = await call(client, "curate_playlist", provider="spotify", prompt="remix", length=8, arc="peak",
                          use_history=False, idempotency_key="curate-remix-peak-1")
        assert r.is_error and fake.created == 1
        fake.fail_writes_after = None
        first_pid = next(iter(fake.playlists))
        assert fake.playlists[first_pid] == []
        fake.catalogue.clear()       # a fresh search would now find nothing: the retry must not search again
        r, data = await call(client, "curate_playlist", provider="spotify", prompt="remix", length=8, arc="peak",
                             use_history=False, idempotency_key="curate-remix-peak-1")
        assert not r.is_error, text_of(r)
        ids = [t["track"]["id"] for t in data["tracks"]]
        assert len(ids) == 8 and fake.created == 1 and data["playlist"]["id"] == first_pid
        assert fake.playlists[first_pid] == ids and data["playlist"]["track_count"] == 8
        writes = len(fake.writes)
        r, again = await call(client, "curate_playlist", provider="spotify", prompt="remix", length=8, arc="peak",
                              use_history=False, idempotency_key="curate-remix-peak-1")
        assert again["replayed"] is True and [t["track"]["id"] for t in again["tracks"]] == ids
        assert len(fake.writes) == writes and fake.created == 1


async def test_duration_target_within_one_track(settings, rows, fake):
    async with curation_client(settings, spotify_token="tok", spotify_api_base=fake.base) as (client, _):
        r, data = await call(client, "curate_playlist", provider="spotify", prompt="remix", duration_minutes=20,
                             arc="valley", use_history=False, create=False)
        assert not r.is_error, text_of(r)
    durations = [t["duration_s"] for t in data["tracks"]]
    assert all(durations) and data["total_duration_s"] == pytest.approx(sum(durations), abs=0.5)
    assert abs(data["total_duration_s"] - 1200) <= max(durations)
    assert data["target"] == "20 minutes, valley energy arc"


async def test_bad_input_names_the_field(settings, fake):
    async with curation_client(settings, spotify_token="tok", spotify_api_base=fake.base) as (client, _):
        r, _ = await call(client, "curate_playlist", provider="spotify", prompt="remix", length=10,
                          duration_minutes=30, create=False)
        assert r.is_error and "length/duration_minutes" in text_of(r)
        r, _ = await call(client, "curate_playlist", provider="spotify", use_history=False, create=False)
        assert r.is_error and "prompt" in text_of(r) and "use_history" in text_of(r)
        r, _ = await call(client, "curate_playlist", provider="spotify", prompt="remix", arc="zigzag", create=False)
        assert r.is_error and "arc" in text_of(r)
        r, _ = await call(client, "curate_playlist", provider="spotify", prompt="remix", max_per_artist=0,
                          create=False)
        assert r.is_error and "max_per_artist" in text_of(r)
        # a named corpus that has no fitted model is refused, not silently replaced by search
        r, _ = await call(client, "curate_playlist", provider="spotify", prompt="remix", corpus_id="corpus_nope",
                          create=False)
        assert r.is_error and "corpus_id" in text_of(r) and "corpus_nope" in text_of(r)
    assert fake.created == 0
