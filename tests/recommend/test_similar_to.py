"""similar_to through a real MCP client: two composed pieces, a corpus of real TidyTuesday rows, owner scoping,
bad ids, and CLAP embeddings once (tiny, random) weights appear in the models dir."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from echotune_mcp.recommend import corpus as corpus_mod
from echotune_mcp.recommend import sound
from tests.conftest import shared_path

TOOLSETS = ("jobs", "artifacts", "compose", "recommend")
PIECE_A = {"prompt": "upbeat house", "bpm": 124, "key": "A minor"}  # key 9, mode 0
PIECE_B = {"prompt": "calm ambient", "bpm": 76, "key": "E major"}  # key 4, mode 1


def text_of(result) -> str:
    return " ".join(b.text for b in result.content if getattr(b, "type", "") == "text")


def _folded(a: float, b: float) -> float:
    """How far apart two tempos are, in octaves, counting half/double time as the same tempo."""
    r = abs(math.log2(a / b))
    return min(r, abs(r - 1))


def _near(row: dict, bpm: float, key: int, mode: int, tol: float = math.log2(1.02)) -> bool:
    return int(row["key"]) == key and int(row["mode"]) == mode and _folded(float(row["tempo"]), bpm) <= tol


def small_playlist_csv(path: Path) -> Path:
    """A few hundred real TidyTuesday rows: the first 250 of part 1, plus the rows of parts 1-2 (up to 20 each)
    within 2 % of each piece's tempo (or half/double) in its key, so both pieces have true matches."""
    folder = shared_path("data", "recsys", "tidytuesday_spotify_songs_2020")
    rows: list[dict] = []
    for part in ("spotify_songs_part1.csv", "spotify_songs_part2.csv"):
        with (folder / part).open(encoding="utf-8", newline="") as fh:
            rows += list(csv.DictReader(fh))
    chosen = rows[:250]
    for piece in ((124, 9, 0), (76, 4, 1)):
        chosen += [r for r in rows[250:] if r["tempo"] and r["key"] and _near(r, *piece)][:20]
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(chosen)
    return path


async def _compose(client, args: dict) -> dict:
    r = await client.call_tool("generate_music", {"duration_s": 6, "seed": 3, **args, "backend": "composer",
                                                  "wait_seconds": 25})
    assert not r.is_error, text_of(r)
    job = r.structured_content
    while job["status"] in ("queued", "running"):
        job = (await client.call_tool("get_job", {"job_id": job["job_id"], "wait_seconds": 25})).structured_content
    assert job["status"] == "succeeded", job
    return job["result"]


async def _similar(client, **args) -> dict:
    r = await client.call_tool("similar_to", args)
    assert not r.is_error, text_of(r)
    return r.structured_content


async def test_similar_to_ranks_matching_tempo_and_key_first(make_client, tmp_path, monkeypatch):
    from tests.recommend.test_sound import save_tiny_clap

    models = tmp_path / "models"
    async with make_client(toolsets=TOOLSETS, models_dir=models) as (client, app):
        info = corpus_mod.add_corpus(corpus_mod.corpora_dir(app.settings), [small_playlist_csv(tmp_path / "pl.csv")],
                                     "playlists", licence="TidyTuesday 2020-01-21 (spotifyr), test use")
        corpus = corpus_mod.load_corpus(corpus_mod.corpora_dir(app.settings), info.id)
        a, b = await _compose(client, PIECE_A), await _compose(client, PIECE_B)

        res_a = await _similar(client, artifact_id=a["mix_artifact_id"], k=100, corpus_id=info.id)
        q = res_a["query"]["features"]
        assert res_a["query"]["key"] == "A minor" and _folded(q["tempo"], 124) < 0.03, res_a["query"]
        assert res_a["embeddings"] is None and any("models pull clap-htsat-unfused" in n for n in res_a["notes"])
        items = res_a["items"]
        assert len(items) == 100 and res_a["compared"] == {"corpus_tracks": len(corpus.items), "artifacts": 1}
        scores = [i["score"] for i in items]
        assert scores == sorted(scores, reverse=True)
        by_id = {it.id: it for it in corpus.items}
        rank = {i["item_id"]: n for n, i in enumerate(items) if i["source"] == f"corpus:{info.id}"}
        feats = lambda item_id: by_id[item_id].features  # noqa: E731
        # a track in the piece's key within 3 % of its tempo ranks above every one 20 % off (folded) in another key
        matching = [i for i in by_id if by_id[i].features.get("key") == q["key"] and by_id[i].features.get("mode") ==
                    q["mode"] and _folded(feats(i)["tempo"], q["tempo"]) <= math.log2(1.03)]
        mismatched = [i for i in by_id if feats(i).get("key") != q["key"]
                      and _folded(feats(i)["tempo"], q["tempo"]) > math.log2(1.2)]
        assert len(matching) >= 10 and len(mismatched) >= 30
        assert set(matching) <= set(rank), "every matching track is in the top 100"
        assert max(rank[i] for i in matching) < min((rank[i] for i in mismatched if i in rank), default=100)
        top = next(i for i in items if i["source"].startswith("corpus:"))
        assert "same key A minor" in top["reasons"] and any("bpm" in r for r in top["reasons"]), top
        assert top["spotify_id"] and top["title"] and top["artists"] and top["features"]["tempo"] > 0

        # the other piece has other neighbours: its own key and tempo
        res_b = await _similar(client, artifact_id=b["mix_uri"].removesuffix("/content"), k=10, corpus_id=info.id)
        top_b = [i for i in res_b["items"] if i["source"].startswith("corpus:")]
        assert all("same key E major" in i["reasons"] for i in top_b[:5]), [i["reasons"] for i in top_b[:5]]
        assert not {i["item_id"] for i in top_b} & {i["item_id"] for i in items[:10]}

        # the owner's other pieces are candidates too (never the piece itself): one in A's key and tempo is
        # among A's nearest, with the reasons why
        a2 = await _compose(client, {**PIECE_A, "prompt": "deep house groove", "seed": 11})
        res = await _similar(client, artifact_id=a["mix_artifact_id"], k=10)
        assert res["compared"] == {"corpus_tracks": len(corpus.items), "artifacts": 2}
        ids = [i["item_id"] for i in res["items"]]
        assert a2["mix_artifact_id"] in ids[:5] and a["mix_artifact_id"] not in ids and b["mix_artifact_id"] not in ids
        mine = res["items"][ids.index(a2["mix_artifact_id"])]
        assert mine["source"] == "artifact" and "same key A minor" in mine["reasons"], mine
        # as recommend's seed_artifact uses it: corpus tracks only
        seeds = await sound.similar_to_artifact(app, "local", a["mix_artifact_id"], 10, info.id, include_artifacts=False)
        assert len(seeds) == 10 and all(i.source == f"corpus:{info.id}" for i in seeds)
        tracks = [i["item_id"] for i in res["items"] if i["source"] != "artifact"]
        assert [i.item_id for i in seeds][:len(tracks)] == tracks

        # CLAP weights appear in the models dir: artifacts are compared by embeddings too
        save_tiny_clap(models / "clap-htsat-unfused")
        try:
            res = await _similar(client, artifact_id=a["mix_artifact_id"], k=5)
            assert res["embeddings"] == "clap:clap-htsat-unfused" and res["embedded_by"] == "in-process"
            assert not any("CLAP" in n for n in res["notes"])
            other = next(i for i in res["items"] if i["item_id"] == a2["mix_artifact_id"])
            assert other["source"] == "artifact"
            assert any(r.startswith("CLAP audio embeddings") for r in other["reasons"]), other
        finally:
            sound.clear_embedders()

        # another principal: alice's piece is not found, and her pieces are not among bob's candidates
        for module in ("recommend", "compose", "jobs"):
            monkeypatch.setattr(f"echotune_mcp.toolsets.{module}.current_principal", lambda: "user:bob")
        r = await client.call_tool("similar_to", {"artifact_id": a["mix_artifact_id"]})
        assert r.is_error and "not found" in text_of(r) and a["mix_artifact_id"] in text_of(r), text_of(r)
        c = await _compose(client, {"prompt": "techno", "bpm": 130, "key": "D minor"})
        res_c = await _similar(client, artifact_id=c["mix_artifact_id"], k=100)
        assert res_c["compared"]["artifacts"] == 0
        assert all(i["source"] != "artifact" for i in res_c["items"])


async def test_similar_to_bad_input_names_the_field(make_client, tmp_path, monkeypatch):
    from tests.recommend.test_sound import save_tiny_clap

    save_tiny_clap(tmp_path / "models" / "clap-htsat-unfused")

    def broken(self, clips):
        raise RuntimeError("weights damaged")

    monkeypatch.setattr(sound.ClapEmbedder, "audios", broken)
    async with make_client(toolsets=TOOLSETS, models_dir=tmp_path / "models") as (client, _):
        r = await client.call_tool("similar_to", {"artifact_id": "art_nothing_like_this_here"})
        assert r.is_error and "not found" in text_of(r), text_of(r)
        piece = await _compose(client, {"prompt": "lofi", "bpm": 84, "key": "D minor"})
        r = await client.call_tool("similar_to", {"artifact_id": piece["midi_artifact_id"]})
        assert r.is_error and "invalid artifact_id" in text_of(r) and "no audio" in text_of(r), text_of(r)
        r = await client.call_tool("similar_to", {"artifact_id": piece["mix_artifact_id"], "corpus_id": "corpus_x"})
        assert r.is_error and "invalid corpus_id" in text_of(r), text_of(r)
        r = await client.call_tool("similar_to", {"artifact_id": piece["mix_artifact_id"], "k": 0})
        assert r.is_error and "k" in text_of(r)
        # no corpus and no other piece: an empty answer that says what to load; a CLAP model that fails is
        # reported, and the answer still comes (by features)
        try:
            res = await _similar(client, artifact_id=piece["mix_artifact_id"])
        finally:
            sound.clear_embedders()
        assert res["items"] == [] and any("recommend corpus add" in n for n in res["notes"])
        assert res["embeddings"] is None and any("CLAP embedding failed (RuntimeError: weights damaged)" in n
                                                 for n in res["notes"]), res["notes"]
        assert res["query"]["features"]["tempo"] > 0
