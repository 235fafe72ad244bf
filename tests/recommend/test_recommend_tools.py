"""recommend_tracks / recommend_artists and fit_recommender (issue #14, items 2-4) on the real Last.fm-2k corpus.

The corpus is Last.fm-2k without 40 held-out listeners (their rows and the tags they assigned are left out of
every file the corpus is built from). Each held-out listener's plays, minus a hidden fifth, are imported as
their own listening history; the tool must then find the hidden artists better than popularity does. Also:
exclude_known, diversity, novelty, provenance and versions, cold start, seeds that match nothing, owner
scoping (one principal's plays never move another's recommendations), and a playlist seed on the Prism mock.
"""

from __future__ import annotations

import json
import shutil
import stat
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from echotune_mcp.app import App
from echotune_mcp.recommend import fitted as fitted_mod
from echotune_mcp.recommend.corpus import add_corpus, corpora_dir, load_corpus
from echotune_mcp.recommend.history import fold
from echotune_mcp.recommend.importer import import_history, path_source
from echotune_mcp.recommend.service import RecommendRequest, recommend
from tests.conftest import shared_path
from tests.providers.conftest import loopback_api, prism, spotify_spec  # noqa: F401 (fixtures)
from tests.providers.test_curation_tools import call, curation_client, text_of

LICENCE = "HetRec 2011 / Last.fm terms: non-commercial research"
HELD_OUT = 40
K = 20


def lastfm() -> Path:
    return shared_path("data", "recsys", "hetrec2011_lastfm_2k")


def _names() -> dict[str, str]:
    out = {}
    with (lastfm() / "artists.dat").open(encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            parts = line.rstrip("\n").split("\t")
            out[parts[0]] = parts[1]
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A data dir holding the corpus (held-out users removed) and its fitted model v1; the held-out users'
    artist names split into visible (imported as history) and hidden (to be found)."""
    base = tmp_path_factory.mktemp("rec")
    folder = lastfm()
    rows: dict[str, list[tuple[str, float]]] = {}
    with (folder / "user_artists.dat").open(encoding="utf-8") as fh:
        header = next(fh)
        for line in fh:
            u, a, w = line.rstrip("\n").split("\t")
            rows.setdefault(u, []).append((a, float(w)))
    rng = np.random.default_rng(7)
    eligible = sorted((u for u, r in rows.items() if len(r) >= 20), key=int)
    held = set(rng.choice(eligible, size=HELD_OUT, replace=False).tolist())
    src = base / "src"
    src.mkdir()
    with (src / "user_artists.dat").open("w", encoding="utf-8") as out:
        out.write(header)
        for u, r in rows.items():
            if u not in held:
                out.writelines(f"{u}\t{a}\t{w:g}\n" for a, w in r)
    tag_files = []
    for name in ("user_taggedartists.dat", "user_taggedartists_2.dat"):
        if not (folder / name).is_file():
            continue
        with (folder / name).open(encoding="utf-8") as fh, (src / name).open("w", encoding="utf-8") as out:
            out.write(next(fh))
            out.writelines(line for line in fh if line.split("\t", 1)[0] not in held)
        tag_files.append(src / name)
    data_dir = base / "data"
    info = add_corpus(data_dir / "corpora", [src / "user_artists.dat"], "interactions", LICENCE, name="Last.fm-2k",
                      items_file=folder / "artists.dat", tag_files=tag_files, tag_names=folder / "tags.dat")
    settings = type("S", (), {"data_dir": data_dir})()
    provenance = fitted_mod.fit_and_save(settings, info.id)
    names = _names()
    users = {}
    for u in sorted(held, key=int):
        artists = [names[a] for a, _w in sorted(rows[u], key=lambda aw: (-aw[1], aw[0])) if a in names]
        order = rng.permutation(len(artists))
        n_hidden = max(1, len(artists) // 5)
        users[u] = ([artists[i] for i in order[n_hidden:]], [artists[i] for i in order[:n_hidden]])
    return {"data_dir": data_dir, "corpus": info, "provenance": provenance, "users": users, "plays": rows,
            "names": names}


@pytest.fixture
def rec_settings(settings, world):
    """Per-test settings (own storage) that see the module's corpus and fitted model."""
    data = Path(settings.data_dir)
    data.mkdir(parents=True, exist_ok=True)
    (data / "corpora").symlink_to(world["data_dir"] / "corpora")
    (data / "models").symlink_to(world["data_dir"] / "models")
    return settings


def scrobbles(tmp: Path, name: str, artists: list[str]) -> Path:
    """A Last.fm scrobble CSV with one play per artist (what the user's own export would hold)."""
    path = tmp / f"{name}.csv"
    lines = ["artist,album,track,date"]
    for i, a in enumerate(artists):
        q = '"' + a.replace('"', '""') + '"'
        lines.append(f"{q},Album,Song {i},{1 + i % 28} Jan 2024 {i % 24:02d}:{i % 60:02d}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def give_history(app: App, owner: str, tmp: Path, artists: list[str], import_id: str) -> None:
    report = await import_history(app.storage.listening, owner, [path_source(scrobbles(tmp, import_id, artists),
                                                                             None)], import_id)
    assert report.imported == len(artists), report


def recall(found: list[str], hidden: list[str]) -> float:
    want = {fold(h) for h in hidden}
    got = {fold(f) for f in found[:K]}
    return len(want & got) / min(K, len(want))


async def test_held_out_listeners_are_served_better_than_popularity(rec_settings, world, tmp_path):
    corpus = load_corpus(corpora_dir(rec_settings), world["corpus"].id)
    listeners = np.bincount(corpus.matrix.indices, minlength=len(corpus.items))
    popular = [corpus.items[j].artists[0] for j in np.argsort(-listeners, kind="stable")]
    ours, pop = [], []
    async with curation_client(rec_settings) as (client, app):
        for u, (visible, hidden) in world["users"].items():
            await give_history(app, "local", tmp_path, visible, f"imp_{u}")
            r, data = await call(client, "recommend_artists", k=K)
            assert not r.is_error, text_of(r)
            names = [it["artists"][0] for it in data["items"]]
            assert len(names) == K
            # exclude_known: never an artist this user played
            assert not {fold(n) for n in names} & {fold(v) for v in visible}
            assert all(it["reasons"] for it in data["items"])
            ours.append(recall(names, hidden))
            seen = {fold(v) for v in visible}
            pop.append(recall([p for p in popular if fold(p) not in seen], hidden))
            assert await app.storage.listening.delete_import("local", f"imp_{u}") == len(visible)
    print(f"recall@{K}: tool {np.mean(ours):.4f}, popularity {np.mean(pop):.4f} over {len(ours)} held-out users")
    assert np.mean(ours) > np.mean(pop) + 0.05, (np.mean(ours), np.mean(pop))
    assert np.mean(ours) > 0.15


async def test_reasons_versions_licence_and_provenance(rec_settings, world, tmp_path):
    u, (visible, _hidden) = next(iter(world["users"].items()))
    async with curation_client(rec_settings) as (client, app):
        await give_history(app, "local", tmp_path, visible, "imp_one")
        r, data = await call(client, "recommend_artists", k=10)
        assert not r.is_error, text_of(r)
    model = data["model"]
    assert model["corpus_id"] == world["corpus"].id and model["model_version"] == 1
    assert model["licence"] == LICENCE and model["commercial_use"] is False and model["stale"] is None
    assert "non-commercial" in data["message"] and "model v1" in data["message"]
    played = [r for it in data["items"] for r in it["reasons"] if r.startswith("you played ")]
    assert played and "listeners of" in played[0]
    assert any("your listening history" in s for s in data["seeds_used"])
    folder = world["data_dir"] / "models" / "recommend" / world["corpus"].id / "v1"
    prov = json.loads((folder / "provenance.json").read_text())
    assert prov["corpus"]["licence"] == LICENCE and prov["corpus"]["version"] == world["corpus"].version
    assert {f["sha256"] for f in prov["corpus"]["source_files"]} == {f["sha256"] for f in
                                                                     world["corpus"].source_files}
    assert prov["weights"] and prov["validation"]["blend"]["recall@20"] > prov["validation"]["popularity"]["recall@20"]
    assert prov["fit_s"] < 60 and prov["code_version"] and prov["created_at"] > 0
    for path in (folder, folder.parent):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_diversity_and_novelty_change_the_list_as_asked(rec_settings, world, tmp_path):
    fitted = fitted_mod.load(fitted_mod.models_root(rec_settings), world["corpus"].id)
    vectors = fitted.als_items / np.linalg.norm(fitted.als_items, axis=1, keepdims=True)  # what diversity uses
    index = {i: j for j, i in enumerate(fitted.item_ids)}
    listeners = np.expm1(fitted.popularity)

    def similarity(items):
        v = vectors[[index[it.item_id] for it in items]]
        s = v @ v.T
        return float((s.sum() - np.trace(s)) / (len(items) * (len(items) - 1)))

    def mean_listeners(items):
        return float(np.mean([listeners[index[it.item_id]] for it in items]))

    sims, pops = [], []
    async with App(rec_settings) as app:
        for n, (u, (visible, _)) in enumerate(list(world["users"].items())[:8]):
            await give_history(app, f"user{n}", tmp_path, visible, f"imp_{n}")
            base = await recommend(app, f"user{n}", RecommendRequest(kind="artist", k=K))
            varied = await recommend(app, f"user{n}", RecommendRequest(kind="artist", k=K, diversity=0.7))
            novel = await recommend(app, f"user{n}", RecommendRequest(kind="artist", k=K, novelty=0.8))
            sims.append((similarity(base.items), similarity(varied.items)))
            pops.append((mean_listeners(base.items), mean_listeners(novel.items)))
            assert any("less-known pick" in r for it in novel.items for r in it.reasons)
    sims_a, pops_a = np.array(sims), np.array(pops)
    assert (sims_a[:, 1] < sims_a[:, 0]).all(), sims
    assert (pops_a[:, 1] < pops_a[:, 0]).all(), pops
    assert pops_a[:, 1].mean() < 0.7 * pops_a[:, 0].mean()


async def test_cold_start_seeds_prompt_and_what_was_ignored(rec_settings, world):
    corpus = load_corpus(corpora_dir(rec_settings), world["corpus"].id)
    listeners = np.bincount(corpus.matrix.indices, minlength=len(corpus.items))
    top = [corpus.items[j].id for j in np.argsort(-listeners, kind="stable")[:10]]
    async with curation_client(rec_settings) as (client, _app):
        r, cold = await call(client, "recommend_artists", k=10)
        assert not r.is_error, text_of(r)
        assert "no listening history" in cold["message"] and "popular" in cold["message"]
        assert [it["item_id"] for it in cold["items"]] == top
        assert all("popular in the corpus" in it["reasons"][0] for it in cold["items"])

        r, seeded = await call(client, "recommend_artists", k=10, seed_artists=["Radiohead", "No Such Band Zzzq"],
                               my_taste=False)
        assert not r.is_error, text_of(r)
        assert any("No Such Band Zzzq" in i and "not in corpus" in i for i in seeded["ignored"])
        assert seeded["seeds_used"] == ["seed_artists[0] 'Radiohead'"]
        assert "radiohead" not in {fold(it["artists"][0]) for it in seeded["items"]}
        assert any("your seed Radiohead" in r for it in seeded["items"] for r in it["reasons"])

        r, prompted = await call(client, "recommend_artists", k=10, prompt="shoegaze")
        assert not r.is_error, text_of(r)
        assert all("shoegaze" in it["tags"] for it in prompted["items"]), prompted["items"]
        assert "prompt" in prompted["message"]
        r, nothing = await call(client, "recommend_artists", k=5, prompt="zzqx qqzzv")
        assert any("no tag or genre" in i for i in nothing["ignored"]) and "popular" in nothing["message"]

        r, _ = await call(client, "recommend_artists", k=0)
        assert r.is_error and "k" in text_of(r)
        r, _ = await call(client, "recommend_tracks", k=5)  # this server has only an artist corpus
        assert r.is_error and "corpus_id" in text_of(r) and "track" in text_of(r)
        r, _ = await call(client, "recommend_artists", k=5, corpus_id="corpus_00000000000000000000")
        assert r.is_error and "corpus_id" in text_of(r)
        r, _ = await call(client, "recommend_tracks", k=5, corpus_id=world["corpus"].id)
        assert r.is_error and "holds artists" in text_of(r) and "recommend_artists" in text_of(r)


async def test_one_principal_never_moves_anothers_recommendations(rec_settings, world, tmp_path):
    users = list(world["users"].values())
    (alice_plays, _), (bob_plays, _) = users[0], users[1]
    async with App(rec_settings) as app:
        await give_history(app, "alice", tmp_path, alice_plays, "imp_alice")
        before = await recommend(app, "alice", RecommendRequest(kind="artist", k=K))
        await give_history(app, "bob", tmp_path, bob_plays + ["Radiohead", "Muse", "Coldplay"], "imp_bob")
        after = await recommend(app, "alice", RecommendRequest(kind="artist", k=K))
        bob = await recommend(app, "bob", RecommendRequest(kind="artist", k=K))
        carol = await recommend(app, "carol", RecommendRequest(kind="artist", k=K))
    assert before.model_dump() == after.model_dump()
    assert [i.item_id for i in bob.items] != [i.item_id for i in after.items]
    assert "no listening history" in carol.message  # a third principal sees nobody's plays
    bob_known = {fold(a) for a in bob_plays}
    assert not any(r.startswith("you played") and any(fold(n) in r.casefold() for n in bob_known - {
        fold(a) for a in alice_plays}) for it in after.items for r in it.reasons)


def tiny_corpus(data_dir: Path, tmp: Path, **tags) -> str:
    """30 listeners of 12 artists; everyone who plays 'string' (the name Prism's examples use) also plays Alpha."""
    rng = np.random.default_rng(3)
    names = ["string", "Alpha", "Beta"] + [f"Band {i}" for i in range(3, 12)]
    (tmp / "artists.dat").write_text("id\tname\n" + "".join(f"{i + 1}\t{n}\n" for i, n in enumerate(names)))
    rows = ["userID\tartistID\tweight"]
    for u in range(30):
        picks = {1, 2} if u < 12 else {3}
        picks |= set((rng.choice(9, size=2, replace=False) + 4).tolist())
        rows += [f"{u}\t{a}\t{int(rng.integers(1, 50))}" for a in sorted(picks)]
    (tmp / "plays.dat").write_text("\n".join(rows) + "\n")
    info = add_corpus(data_dir / "corpora", [tmp / "plays.dat"], "interactions", "test data, no restrictions",
                      items_file=tmp / "artists.dat", commercial_use=True, **tags)
    prov = fitted_mod.fit_and_save(type("S", (), {"data_dir": data_dir})(), info.id)
    assert prov["weights_from"].startswith("defaults")  # too few listeners to carve validation users from
    return info.id


async def test_a_playlist_seed_read_from_the_prism_spotify_mock(settings, prism, tmp_path):
    cid = tiny_corpus(Path(settings.data_dir), tmp_path)
    async with curation_client(settings, spotify_token="ci-token", spotify_api_base=prism) as (client, _app):
        r, data = await call(client, "recommend_artists", seed_playlist="3cEYpjA9oz9GiPac4AsH4n", my_taste=False,
                             k=3, corpus_id=cid)
        assert not r.is_error, text_of(r)
        assert any(s.startswith("seed_playlist") and "on spotify" in s for s in data["seeds_used"]), data
        assert data["items"][0]["artists"] == ["Alpha"]
        assert "listeners of your seed string also play this" in data["items"][0]["reasons"]
        assert "string" not in [it["artists"][0] for it in data["items"]]
        assert data["model"]["commercial_use"] is True and "non-commercial" not in data["message"]
        r, _ = await call(client, "recommend_artists", seed_playlist="not a playlist id!", corpus_id=cid)
        assert r.is_error and "seed_playlist" in text_of(r)


@pytest.fixture(scope="module")
def tracks_world(tmp_path_factory):
    """The TidyTuesday playlists as a track corpus (Spotify ids, genres, audio features), fitted."""
    data_dir = tmp_path_factory.mktemp("tracks") / "data"
    parts = sorted(shared_path("data", "recsys", "tidytuesday_spotify_songs_2020").glob("spotify_songs_part*.csv"))
    info = add_corpus(data_dir / "corpora", parts, "playlists", "CC0 (TidyTuesday / spotifyr)", name="TidyTuesday",
                      commercial_use=False)
    fitted_mod.fit_and_save(type("S", (), {"data_dir": data_dir})(), info.id)
    return data_dir, info


def extended_history(folder: Path, tracks) -> Path:
    rows = [{"ts": f"2024-01-{1 + i % 28:02d}T12:{i % 60:02d}:00Z", "ms_played": 200_000,
             "master_metadata_track_name": t.title, "master_metadata_album_artist_name": t.artists[0],
             "master_metadata_album_album_name": "x", "spotify_track_uri": t.id, "reason_end": "trackdone",
             "skipped": False, "episode_name": None, "spotify_episode_uri": None} for i, t in enumerate(tracks)]
    path = folder / "Streaming_History_Audio_2024_0.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


async def test_tracks_from_a_playlist_corpus_with_seeds_history_and_provider_ids(settings, tracks_world, tmp_path):
    data_dir, info = tracks_world
    data = Path(settings.data_dir)
    data.mkdir(parents=True, exist_ok=True)
    (data / "corpora").symlink_to(data_dir / "corpora")
    (data / "models").symlink_to(data_dir / "models")
    corpus = load_corpus(corpora_dir(settings), info.id)
    # a listener of one playlist: its first half is their history, one track of the rest a seed by URI and one by name
    row = corpus.matrix[5].indices
    played = [corpus.items[j] for j in row[: len(row) // 2]]
    by_uri, by_name = corpus.items[row[-1]], corpus.items[row[-2]]
    async with curation_client(settings) as (client, app):
        report = await import_history(app.storage.listening, "local",
                                      [path_source(extended_history(tmp_path, played), None)], "imp_tracks")
        assert report.imported == len(played)
        r, out = await call(client, "recommend_tracks", k=15, provider="spotify", diversity=0.3,
                            seed_tracks=[by_uri.id, f"{by_name.artists[0]} - {by_name.title}", "Nobody - Nothing"])
        assert not r.is_error, text_of(r)
    ids = [it["item_id"] for it in out["items"]]
    assert len(ids) == 15 and not set(ids) & ({p.id for p in played} | {by_uri.id, by_name.id})
    assert len(out["seeds_used"]) == 3 and any("Nobody - Nothing" in i for i in out["ignored"])
    assert all(it["kind"] == "track" and it["title"] and it["features"] for it in out["items"])
    pt = [it["provider_track"] for it in out["items"]]
    assert all(p and p["provider"] == "spotify" and p["id"] == it["spotify_id"] for p, it in zip(pt, out["items"]))
    reasons = [r for it in out["items"] for r in it["reasons"]]
    assert any(r.startswith("you played ") for r in reasons) and any("your seed" in r for r in reasons)
    assert out["model"]["corpus_id"] == info.id and "non-commercial" in out["message"]


async def test_refit_versions_and_a_changed_corpus_is_detected(settings, world):
    data = Path(settings.data_dir)
    data.mkdir(parents=True, exist_ok=True)
    (data / "corpora").symlink_to(world["data_dir"] / "corpora")
    shutil.copytree(world["data_dir"] / "models", data / "models")
    cid = world["corpus"].id
    root = fitted_mod.models_root(settings)
    prov_path = root / cid / "v1" / "provenance.json"
    async with curation_client(settings) as (client, _app):
        r, _ = await call(client, "fit_recommender", corpus_id=cid)
        assert r.is_error and "force" in text_of(r)  # already fitted on this corpus version
        r, _ = await call(client, "fit_recommender", corpus_id="corpus_00000000000000000000")
        assert r.is_error and "corpus_id" in text_of(r)
        prov = json.loads(prov_path.read_text())
        prov["corpus"]["version"] = world["corpus"].version - 1  # as if fitted before the corpus last changed
        prov_path.write_text(json.dumps(prov))
        r, data_ = await call(client, "recommend_artists", k=3)
        assert not r.is_error and len(data_["items"]) == 3
        assert "changed since model v1" in data_["model"]["stale"] and "fit_recommender" in data_["message"]
        r, job = await call(client, "fit_recommender", corpus_id=cid, wait_seconds=0)  # no force needed now
        assert not r.is_error, text_of(r)
        while job["status"] not in ("succeeded", "failed", "cancelled"):
            r, job = await call(client, "get_job", job_id=job["job_id"], wait_seconds=20)
        assert job["status"] == "succeeded"
        r, data_ = await call(client, "recommend_artists", k=3)
        assert data_["model"]["model_version"] == 2 and data_["model"]["stale"] is None
        assert job["result"]["version"] == 2 and fitted_mod._versions(root, cid) == [1, 2]  # the old one kept


def test_cli_fit_stores_a_version(tmp_path, capsys):
    from echotune_mcp.recommend.cli import recommend_main

    cid = tiny_corpus(tmp_path / "data", tmp_path)  # v1 by the library call
    assert recommend_main(["fit", "--corpus", cid, "--data-dir", str(tmp_path / "data")]) == 0
    out = json.loads(capsys.readouterr().out)["fitted"]
    assert out["version"] == 2 and out["corpus"]["id"] == cid and out["item_kind"] == "artist"
    assert recommend_main(["fit", "--corpus", "corpus_00000000000000000000", "--data-dir",
                           str(tmp_path / "data")]) == 2
    assert "no corpus" in capsys.readouterr().err


async def test_a_large_catalogue_answers_als_from_the_stored_ann_index(settings, world, tmp_path, monkeypatch):
    """Above ANN_MIN_ITEMS the ALS item vectors get a usearch HNSW index at fit time, stored with the version and
    used per request; lowered here so Last.fm-2k (17.6k artists) counts as large. Same users, nearly same lists."""
    data = Path(settings.data_dir)
    data.mkdir(parents=True, exist_ok=True)
    (data / "corpora").symlink_to(world["data_dir"] / "corpora")
    shutil.copytree(world["data_dir"] / "models", data / "models")
    monkeypatch.setattr(fitted_mod, "ANN_MIN_ITEMS", 10_000)
    prov = fitted_mod.fit_and_save(settings, world["corpus"].id)
    folder = fitted_mod.models_root(settings) / world["corpus"].id / f"v{prov['version']}"
    assert prov["params"]["als_retrieval"].startswith("ann") and (folder / fitted_mod.ANN_FILE).is_file()
    assert stat.S_IMODE((folder / fitted_mod.ANN_FILE).stat().st_mode) == 0o600
    assert fitted_mod.load(fitted_mod.models_root(settings), world["corpus"].id, 1).als_index is None  # v1: exact
    newest = fitted_mod.load(fitted_mod.models_root(settings), world["corpus"].id)
    assert newest.version == prov["version"] and newest.als_index is not None
    overlap = []
    async with App(settings) as app:
        for n, (visible, _hidden) in enumerate(list(world["users"].values())[:5]):
            await give_history(app, f"user{n}", tmp_path, visible, f"imp_{n}")
            ann = await recommend(app, f"user{n}", RecommendRequest(kind="artist", k=K))
            assert ann.model["als_retrieval"] == "ann" and ann.model["model_version"] == prov["version"]
            again = await recommend(app, f"user{n}", RecommendRequest(kind="artist", k=K))
            assert [i.item_id for i in again.items] == [i.item_id for i in ann.items]  # deterministic
            index, newest.als_index = newest.als_index, None  # the same request on the exact ALS path
            try:
                exact = await recommend(app, f"user{n}", RecommendRequest(kind="artist", k=K))
            finally:
                newest.als_index = index
            assert exact.model["als_retrieval"] == "exact"
            overlap.append(len({i.item_id for i in ann.items} & {i.item_id for i in exact.items}) / K)
    assert np.mean(overlap) >= 0.8, overlap


async def test_a_prompt_reaches_tags_it_does_not_name_through_clap(settings, tmp_path):
    """With CLAP weights present (a tiny random CLAP here) the fit embeds the corpus's tags; a prompt naming no
    tag then still ranks the items carrying the tags nearest it, and says so. Without weights: tags only, said."""
    from tests.recommend.test_sound import save_tiny_clap

    data = Path(settings.data_dir)
    (tmp_path / "tags.dat").write_text("tagID\ttagValue\n1\tshoegaze\n2\tdream pop\n3\tthrash metal\n4\tpolka\n")
    (tmp_path / "tagged.dat").write_text("userID\tartistID\ttagID\n" + "".join(
        f"{u}\t{a}\t{t}\n" for u, a, t in [(0, 1, 1), (0, 2, 2), (1, 3, 3), (1, 4, 4), (2, 5, 1), (2, 6, 3)]))
    cid = tiny_corpus(data, tmp_path, tag_files=[tmp_path / "tagged.dat"], tag_names=tmp_path / "tags.dat")
    prov = json.loads((fitted_mod.models_root(settings) / cid / "v1" / "provenance.json").read_text())
    assert prov["params"]["prompt_embeddings"].startswith("none (no settings")  # fitted without settings
    save_tiny_clap(settings.weights_dir / settings.clap_model)
    prov = fitted_mod.fit_and_save(settings, cid)
    assert prov["params"]["prompt_embeddings"] == f"clap:{settings.clap_model} over 4 tags"
    fitted = fitted_mod.load(fitted_mod.models_root(settings), cid)
    assert sorted(fitted.tag_vocab) == ["dream pop", "polka", "shoegaze", "thrash metal"]
    assert np.allclose(np.linalg.norm(fitted.tag_clap, axis=1), 1.0, atol=1e-5)
    async with App(settings) as app:
        res = await recommend(app, "nobody", RecommendRequest(kind="artist", k=3, prompt="hazy wall of guitars",
                                                              corpus_id=cid))
        assert res.model["prompt_embeddings"].startswith("clap:")
        assert any("tags CLAP finds near it" in s for s in res.seeds_used), res.seeds_used
        assert any("close to your prompt (CLAP" in r for it in res.items for r in it.reasons)
        literal = await recommend(app, "nobody", RecommendRequest(kind="artist", k=2, prompt="polka",
                                                                  corpus_id=cid))
        assert literal.items[0].tags[:1] == ["polka"] and "as your prompt asked" in literal.items[0].reasons[0]


async def test_an_artifact_of_ours_as_the_seed(settings, tracks_world):
    """seed_artifact: the corpus tracks that sound most like a piece we made (sound.similar_to_artifact) are the
    seeds; they are named in seeds_used and never returned themselves."""
    data_dir, info = tracks_world
    data = Path(settings.data_dir)
    data.mkdir(parents=True, exist_ok=True)
    (data / "corpora").symlink_to(data_dir / "corpora")
    (data / "models").symlink_to(data_dir / "models")
    async with curation_client(settings) as (client, app):
        r = await client.call_tool("generate_music", {"prompt": "upbeat house", "bpm": 124, "key": "A minor",
                                                      "duration_s": 6, "seed": 3, "backend": "composer",
                                                      "wait_seconds": 25})
        job = r.structured_content
        while job["status"] in ("queued", "running"):
            job = (await client.call_tool("get_job", {"job_id": job["job_id"], "wait_seconds": 25})).structured_content
        assert job["status"] == "succeeded", job
        art = job["result"]["mix_artifact_id"]
        r, out = await call(client, "recommend_tracks", seed_artifact=art, my_taste=False, k=10)
        assert not r.is_error, text_of(r)
        from echotune_mcp.recommend.sound import similar_to_artifact

        seeds = await similar_to_artifact(app, "local", art, 10, corpus_id=info.id, include_artifacts=False)
        r, _ = await call(client, "recommend_tracks", seed_artifact="art_NoSuchArtifact1234", k=3)
        assert r.is_error and "art_NoSuchArtifact1234" in text_of(r), text_of(r)
    assert any(s.startswith(f"seed_artifact '{art}'") for s in out["seeds_used"]), out["seeds_used"]
    assert len(out["items"]) == 10 and not {i["item_id"] for i in out["items"]} & {s.item_id for s in seeds}
    assert any("your seed" in r for it in out["items"] for r in it["reasons"])


async def test_items_without_a_provider_id_are_found_by_isrc_or_name_and_the_rest_reported(settings,
                                                                                           loopback_api):
    """provider=...: a corpus track without the provider's id is looked up (ISRC first, then title + artist,
    providers.curate.find_on) on a Spotify double at the HTTP boundary; what is not found is listed in ignored."""
    from echotune_mcp.providers.hub import ProviderHub
    from echotune_mcp.recommend.service import RecommendedItem, _resolve
    from tests.providers.fake_spotify import FakeSpotify, sid, track

    fs = FakeSpotify([track("a1", "So What", "Miles Davis", "USSM15900113"), track("b1", "Take Five", "Dave Brubeck")])
    api = loopback_api(fs)

    def item(item_id, title, artist, isrc=None, spotify_id=None):
        return RecommendedItem(item_id=item_id, kind="track", title=title, artists=[artist], isrc=isrc,
                               spotify_id=spotify_id, score=1.0, reasons=["x"], source="corpus:c")

    items = [item("c:1", "So What (remaster)", "Miles Davis", isrc="USSM15900113"),
             item("c:2", "Take Five", "Dave Brubeck"), item("c:3", "Unfindable", "Nobody"),
             item("spotify:track:" + sid("z9"), "Known", "Someone", spotify_id=sid("z9"))]
    ignored: list[str] = []
    async with App(replace(settings, spotify_token="tok", spotify_api_base=api.base)) as app:
        await _resolve(ProviderHub(app), "local", "spotify", items, ignored)
    assert [i.provider_track.id if i.provider_track else None for i in items] == [sid("a1"), sid("b1"), None,
                                                                                  sid("z9")]
    assert ignored == ["c:3 (Nobody - Unfindable): not found on spotify"]
    assert not any("z9" in p for _m, p, _b in api.requests)  # the corpus's own Spotify id needs no request
    # not connected: the recommendations stand, and what could not be looked up says why
    fresh = [item("c:2", "Take Five", "Dave Brubeck")]
    ignored = []
    async with App(settings) as app:
        await _resolve(ProviderHub(app), "local", "spotify", fresh, ignored)
    assert fresh[0].provider_track is None and len(ignored) == 1
    assert ignored[0].startswith("provider spotify: 1 tracks not looked up") and "connect_provider" in ignored[0]
