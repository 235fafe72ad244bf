"""Issue #14 end to end, through one MCP server: import a Spotify extended-history file -> taste_profile ->
fit the recommender on a real corpus -> recommend_tracks -> curate_playlist creates the playlist on Spotify.

Spotify is a stateful stand-in at the HTTP boundary (it keeps the playlists, so the test can read back what
was written) behind a gate that first sends every request to the Prism mock of Spotify's own OpenAPI spec and
refuses it if Prism does: our requests are checked against the spec, and their effects are checked on state.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import replace

import requests
from mcp import Client
from scipy.stats import spearmanr

from echotune_mcp.app import App
from echotune_mcp.recommend.corpus import add_corpus, corpora_dir
from echotune_mcp.server import build_server
from tests.conftest import shared_path
from tests.providers.conftest import loopback_api, prism, spotify_spec  # noqa: F401 (fixtures)
from tests.providers.fake_spotify import FakeSpotify

LICENCE = "TidyTuesday 2020-01-21 (spotifyr sample): non-commercial research"
PLAYLISTS = 30          # the first 30 playlists of part 1: ~1,900 tracks, dance pop and post-teen pop
PLAYED = {"Ed Sheeran": 9, "Dua Lipa": 6, "Lewis Capaldi": 4}   # plays per artist in the history file


def corpus_rows() -> list[dict]:
    path = shared_path("data", "recsys", "tidytuesday_spotify_songs_2020", "spotify_songs_part1.csv")
    seen: list[str] = []
    out = []
    with path.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["playlist_id"] not in seen:
                if len(seen) == PLAYLISTS:
                    break
                seen.append(row["playlist_id"])
            out.append(row)
    return out


def as_fake(row: dict) -> dict:
    tid = row["track_id"]
    return {"id": tid, "uri": f"spotify:track:{tid}", "type": "track", "name": row["track_name"],
            "artists": [{"name": row["track_artist"]}], "duration_ms": int(row["duration_ms"]), "explicit": False,
            "external_ids": {}, "album": {"name": row["track_album_name"], "release_date": "2019-01-01"},
            "external_urls": {"spotify": f"https://open.spotify.com/track/{tid}"}}


def history(rows: list[dict]) -> list[dict]:
    """Spotify extended streaming history: each artist's first tracks in the corpus, played to the end."""
    out = []
    minute = 0
    for artist, plays in PLAYED.items():
        tracks = list({r["track_id"]: r for r in rows if r["track_artist"] == artist}.values())[:3]
        assert tracks, artist
        for i in range(plays):
            t = tracks[i % len(tracks)]
            minute += 7
            out.append({"ts": f"2024-03-{1 + minute // 1440:02d}T{minute // 60 % 24:02d}:{minute % 60:02d}:00Z",
                        "username": "someone", "platform": "Android OS 14", "ms_played": int(t["duration_ms"]),
                        "conn_country": "GB", "master_metadata_track_name": t["track_name"],
                        "master_metadata_album_artist_name": artist,
                        "master_metadata_album_album_name": t["track_album_name"],
                        "spotify_track_uri": f"spotify:track:{t['track_id']}", "episode_name": None,
                        "episode_show_name": None, "spotify_episode_uri": None, "reason_start": "trackdone",
                        "reason_end": "trackdone", "shuffle": False, "skipped": False, "offline": False,
                        "offline_timestamp": 0, "incognito_mode": False})
    return out


class PrismGate:
    """Send each request to Prism first (it validates against Spotify's spec), then to the stateful fake."""

    def __init__(self, fake: FakeSpotify, prism_base: str):
        self.fake, self.prism = fake, prism_base
        self.checked: list[tuple[str, str]] = []
        self.refused: list[tuple[str, str, int, str]] = []

    def __call__(self, method: str, path: str, headers: dict, raw: bytes):
        send = {k: v for k, v in headers.items() if k.lower() in ("authorization", "content-type", "accept")}
        r = requests.request(method, self.prism + path, headers=send, data=raw or None, timeout=20)
        self.checked.append((method, path.split("?")[0]))
        if r.status_code >= 400:
            self.refused.append((method, path, r.status_code, r.text[:500]))
            return r.status_code, {}, r.json() if r.content else {}
        return self.fake(method, path, headers, raw)


async def call(client, tool, **args):
    r = await client.call_tool(tool, args)
    text = " ".join(b.text for b in r.content if getattr(b, "type", "") == "text")
    assert not r.is_error, f"{tool}: {text}"
    return r.structured_content


async def finished(client, job: dict) -> dict:
    for _ in range(20):
        if job["status"] not in ("queued", "running"):
            break
        job = await call(client, "get_job", job_id=job["job_id"], wait_seconds=20)
    assert job["status"] == "succeeded", job
    return job


async def test_import_profile_recommend_curate(settings, prism, loopback_api):  # noqa: F811
    rows = corpus_rows()
    by_id = {r["track_id"]: r for r in rows}
    fake = FakeSpotify([as_fake(r) for r in by_id.values()])
    gate = PrismGate(fake, prism)
    api = loopback_api(gate)

    # the operator loads the corpus (with its licence); the user has a history file
    root = settings.allowed_roots[0]
    corpus_csv = root / "playlists.csv"
    with corpus_csv.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    info = add_corpus(corpora_dir(settings), [corpus_csv], "playlists", LICENCE, name="tidytuesday-part1")
    plays = history(rows)
    export = root / "Streaming_History_Audio_2024_0.json"
    export.write_text(json.dumps(plays, indent=1), encoding="utf-8")
    played_ids = {p["spotify_track_uri"].rsplit(":", 1)[1] for p in plays}

    app = App(replace(settings, spotify_token="tok", spotify_api_base=api.base))
    async with app, Client(build_server(app), raise_exceptions=True) as client:
        # 1. import: every play stored
        job = await finished(client, await call(client, "import_listening_history", paths=[str(export)]))
        assert job["result"]["imported"] == len(plays) == sum(PLAYED.values())
        assert job["result"]["by_format"]["spotify_extended"]["imported"] == len(plays)

        # 2. the taste profile is built from those plays
        profile = await call(client, "taste_profile", top=3)
        assert [(a["artist"], a["plays"]) for a in profile["top_artists_by_plays"]] == list(PLAYED.items())
        assert profile["totals"]["plays"] == len(plays)

        # 3. fit the corpus, then recommend from the history
        await finished(client, await call(client, "fit_recommender", corpus_id=info.id))
        rec = await call(client, "recommend_tracks", k=20, provider="spotify")
        items = rec["items"]
        assert len(items) == 20 and rec["model"]["corpus_id"] == info.id
        assert not {i["spotify_id"] for i in items} & played_ids            # exclude_known
        assert all(i["reasons"] and i["provider_track"] for i in items)
        # collaborative: most recommendations share a playlist with something the user played
        lists_of = {}
        for r in rows:
            lists_of.setdefault(r["track_id"], set()).add(r["playlist_id"])
        heard_lists = set().union(*(lists_of[t] for t in played_ids))
        near = sum(1 for i in items if lists_of.get(i["spotify_id"], set()) & heard_lists)
        assert near >= 15, near

        # 4. a proposal first (nothing written): 30 minutes, only tracks not played yet, seeded by an artist too
        plan = await call(client, "curate_playlist", provider="spotify", duration_minutes=30, arc="peak",
                          only_new=True, seed_artists=["Dua Lipa"], create=False)
        picked = [t["track"]["id"] for t in plan["tracks"]]
        assert plan["playlist"] is None and fake.created == 0 and not set(picked) & played_ids
        assert abs(plan["total_duration_s"] - 1800) <= max(t["duration_s"] for t in plan["tracks"])

        # 5. curate on the provider: the playlist is created there, with the tracks in the proposed order
        cur = await call(client, "curate_playlist", provider="spotify", length=12, arc="rise", max_per_artist=2,
                         name="E2E rise", idempotency_key="e2e-curate-rise-1")
    pid = cur["playlist"]["id"]
    proposed = [t["track"]["id"] for t in cur["tracks"]]
    assert len(proposed) == 12 and fake.playlists[pid] == proposed
    assert fake.created == 1 and cur["playlist"]["track_count"] == 12
    assert all(t["source"] == f"corpus:{info.id}" for t in cur["tracks"])   # the recommender chose every track
    assert cur["model"]["corpus_id"] == info.id and LICENCE in cur["licences"]
    energies = [t["energy"] for t in cur["tracks"]]
    assert all(e == float(by_id[t]["energy"]) for e, t in zip(energies, proposed, strict=True))
    assert spearmanr(energies, [t["target_energy"] for t in cur["tracks"]]).statistic > 0.6
    leads = Counter(t["track"]["artists"][0] for t in cur["tracks"])
    assert max(leads.values()) <= 2
    assert all(t["why"].startswith("recommended: ") and " bpm" in t["why"] for t in cur["tracks"])
    # every request was one Spotify's spec allows (Prism refused none), and the writes went through it
    assert not gate.refused, gate.refused
    assert ("POST", "/me/playlists") in gate.checked and ("POST", f"/playlists/{pid}/items") in gate.checked
