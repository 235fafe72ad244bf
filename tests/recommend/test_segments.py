"""Listener segments (recommend/segments.py, the audience toolset): coherent clusters on real Last.fm-2k data,
the k-anonymity floor on segments and on the artists/tags named, and principals counted only when opted in,
with nothing but aggregates in the reply (through the MCP tools, several principals)."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace

import numpy as np
import pytest

from echotune_mcp.recommend.corpus import add_corpus, corpora_dir, load_corpus
from echotune_mcp.recommend.importer import import_history, path_source
from echotune_mcp.recommend.segments import (PopulationTooSmall, population_from_corpus, population_from_vectors,
                                             segment, weighted)
from echotune_mcp.storage import open_storage
from tests.conftest import shared_path


@pytest.fixture(scope="module")
def lastfm_population(tmp_path_factory):
    folder = shared_path("data", "recsys", "hetrec2011_lastfm_2k")
    root = tmp_path_factory.mktemp("segments") / "corpora"
    info = add_corpus(root, [folder / "user_artists.dat"], "interactions", "non-commercial research",
                      items_file=folder / "artists.dat",
                      tag_files=[folder / "user_taggedartists.dat", folder / "user_taggedartists_2.dat"],
                      tag_names=folder / "tags.dat")
    return population_from_corpus(load_corpus(root, info.id))


def mean_cosines(x, labels) -> tuple[float, float]:
    """Mean cosine between members of one segment, and between members of different segments."""
    sims = (x @ x.T).toarray()
    same = labels[:, None] == labels[None, :]
    np.fill_diagonal(same, False)
    other = labels[:, None] != labels[None, :]
    return float(sims[same].mean()), float(sims[other].mean())


def test_lastfm_segments_are_coherent_and_distinct(lastfm_population):
    pop = lastfm_population
    report, labels = segment(pop, 8, 5, seed=0)
    assert report.members == 1892 and len(report.segments) == 8 and report.suppressed_members == 0
    assert sum(s.size for s in report.segments) == 1892
    within, between = mean_cosines(weighted(pop.matrix), labels)
    # Random labels of the same sizes give within ≈ between; our segments share far more taste inside.
    shuffled = np.random.default_rng(1).permutation(labels)
    r_within, r_between = mean_cosines(weighted(pop.matrix), shuffled)
    assert within > 2.5 * between and within > 2 * r_within, (within, between, r_within)
    top_tags = [s.defining_tags[0].name for s in report.segments]
    assert len(set(top_tags)) == len(top_tags), top_tags  # each segment is defined by a different tag
    top_artists = [s.defining_artists[0].name for s in report.segments]
    assert len(set(top_artists)) == len(top_artists)
    assert len({s.name for s in report.segments}) == 8 and all(" / " in s.name for s in report.segments)
    for s in report.segments:
        assert s.size >= 5 and 0 < s.cohesion <= 1
        for term in s.defining_artists + s.defining_tags:
            assert term.members >= 5 and term.lift > 1 and term.share == pytest.approx(term.members / s.size, abs=1e-3)
    # Metal listeners form a segment of their own (a known structure of this data set).
    metal = [s for s in report.segments if "metal" in {t.name for t in s.defining_tags}]
    assert metal and any(a.name in {"Iron Maiden", "Metallica", "Black Sabbath", "Megadeth"}
                         for s in metal for a in s.defining_artists)
    again, labels2 = segment(pop, 8, 5, seed=0)
    assert again == report and (labels2 == labels).all()  # deterministic for a seed


def groups(**sizes_and_artists) -> list[dict[str, float]]:
    out = []
    for _name, (n, artists) in sizes_and_artists.items():
        for m in range(n):
            out.append({f"artist:{a.lower()}": 10.0 + (m + i) % 3 for i, a in enumerate(artists)})
    return out


ROCK = ["Iron Maiden", "Metallica", "Black Sabbath"]
JAZZ = ["Miles Davis", "John Coltrane", "Bill Evans"]
POLKA = ["Frankie Yankovic", "Walter Ostanek"]


def small_population():
    vectors = groups(rock=(12, ROCK), jazz=(12, JAZZ), polka=(2, POLKA))
    vectors[0]["artist:rare band"] = 50.0  # three rock members share a rarity: below the floor, never named
    vectors[1]["artist:rare band"] = 50.0
    vectors[2]["artist:rare band"] = 50.0
    names = {f"artist:{a.lower()}": a for a in ROCK + JAZZ + POLKA + ["Rare Band"]}
    tags = {f"artist:{a.lower()}": ("metal",) for a in ROCK} | {f"artist:{a.lower()}": ("jazz",) for a in JAZZ}
    return population_from_vectors(vectors, names, tags)


def test_floor_suppresses_or_merges_a_tiny_cluster_and_hides_rare_artists():
    pop = small_population()
    report, labels = segment(pop, 3, 5, seed=0, small="suppress")
    assert sorted(s.size for s in report.segments) == [12, 12]
    assert (report.suppressed_segments, report.suppressed_members) == (1, 2)
    assert (labels == -1).sum() == 2 and (labels[-2:] == -1).all()
    text = report.model_dump_json()
    assert "Yankovic" not in text and "Ostanek" not in text and "Rare Band" not in text
    assert {s.defining_tags[0].name for s in report.segments} == {"metal", "jazz"}
    assert {s.name.split(" / ")[0] for s in report.segments} == {"metal", "jazz"}

    merged, labels = segment(pop, 3, 5, seed=0, small="merge")
    assert merged.merged_segments == 1 and merged.suppressed_members == 0
    assert sum(s.size for s in merged.segments) == 26 and len(merged.segments) == 2
    assert "Yankovic" not in merged.model_dump_json() and (labels >= 0).all()

    # A raised floor of 13 leaves no cluster standing alone: everything merges into one segment.
    one, _ = segment(pop, 3, 13, seed=0)
    assert [s.size for s in one.segments] == [26]


def test_population_below_the_floor_is_refused():
    pop = population_from_vectors(groups(rock=(4, ROCK)), {})
    with pytest.raises(PopulationTooSmall, match="4 members, fewer than the floor of 5"):
        segment(pop, 2, 5)


@pytest.fixture(params=["sqlite", "mongodb"])
async def storage(request, settings):
    if request.param == "mongodb":
        settings = replace(settings, mongodb_uri=request.getfixturevalue("mongo_uri"),
                           mongodb_db=f"t_{uuid.uuid4().hex[:10]}")
    st = await open_storage(settings)
    assert st.backend.name == request.param
    yield st
    await st.close()


async def test_opt_in_store_is_idempotent_reversible_and_owner_scoped(storage):
    store = storage.segment_optins
    first, created = await store.opt_in("alice")
    again, created_again = await store.opt_in("alice")
    assert created and not created_again and again.created_at == first.created_at
    await store.opt_in("bob")
    assert await store.opted_in_owners(100) == ["alice", "bob"] and await store.count_all() == 2
    assert await store.get("bob", store.record_id("alice")) is None  # reads are owner-scoped
    assert await store.opt_out("bob") and not await store.opt_out("bob")
    assert await store.status("bob") is None and (await store.status("alice")).owner == "alice"
    assert await store.opted_in_owners(100) == ["alice"]


# -- through the MCP tools, several principals ------------------------------------------------------------------
def text_of(result) -> str:
    return "\n".join(getattr(b, "text", "") for b in result.content)


def scrobbles(artists: list[str], day: int, secret: str | None = None) -> str:
    rows = ["artist,album,track,date"]
    for i, a in enumerate(artists * 4):
        rows.append(f"{a},Album,Song {i},{day:02d} Jan 2024 {10 + i // 60:02d}:{i % 60:02d}")
    if secret:
        rows.append(f"{secret},Hidden,Private Track,{day:02d} Feb 2024 09:00")
    return "\n".join(rows) + "\n"


def tagged_corpus(settings, folder):
    """A Last.fm-2k-shaped corpus: artist names and the tags its users gave them."""
    artists = ROCK + JAZZ
    (folder / "ua.dat").write_text("userID\tartistID\tweight\n" + "".join(
        f"{u}\t{a}\t{10 + u}\n" for u in range(1, 7) for a in range(1, 7)))
    (folder / "artists.dat").write_text("id\tname\turl\tpictureURL\n" + "".join(
        f"{i}\t{name}\thttp://x\thttp://y\n" for i, name in enumerate(artists, start=1)))
    (folder / "uta.dat").write_text("userID\tartistID\ttagID\tday\tmonth\tyear\n" + "".join(
        f"{u}\t{a}\t{1 if a <= 3 else 2}\t1\t1\t2010\n" for u in range(1, 4) for a in range(1, 7)))
    (folder / "tags.dat").write_text("tagID\ttagValue\n1\theavy metal\n2\tcool jazz\n")
    return add_corpus(corpora_dir(settings), [folder / "ua.dat"], "interactions", "CC BY-NC (test)",
                      items_file=folder / "artists.dat", tag_files=[folder / "uta.dat"], tag_names=folder / "tags.dat")


async def test_principals_only_opted_in_and_only_aggregates(make_client, settings, monkeypatch):
    folder = settings.allowed_roots[0]
    people = {f"user:metal{i}": ROCK for i in range(6)} | {f"user:jazz{i}": JAZZ for i in range(6)}
    people |= {"user:outsider1": ["Secret Artist"], "user:outsider2": ["Secret Artist"]}
    who = ["local"]
    monkeypatch.setattr("echotune_mcp.toolsets.audience.current_principal", lambda: who[0])

    async def as_(owner, tool, args):
        who[0] = owner
        return await client.call_tool(tool, args)

    async with make_client() as (client, app):
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert tools["segment_listeners"].annotations.read_only_hint is True
        assert tools["list_corpora"].annotations.read_only_hint is True
        share = tools["share_taste_for_segments"].annotations
        assert share.read_only_hint is False and share.idempotent_hint is True and share.destructive_hint is False
        for n, (owner, artists) in enumerate(people.items()):
            path = folder / f"{owner.split(':')[1]}.csv"
            path.write_text(scrobbles(artists, 1 + n, secret=f"Only{owner.split(':')[1]}"), encoding="utf-8")
            report = await import_history(app.storage.listening, owner, [path_source(path, None)], f"imp_{n}")
            assert report.imported == len(artists) * 4 + 1

        nobody = await as_("user:metal0", "segment_listeners", {"population": "principals"})
        assert nobody.is_error and "0 members" in text_of(nobody) and "share_taste_for_segments" in text_of(nobody)

        for owner in ["user:metal0", "user:metal1", "user:jazz0", "user:jazz1"]:
            r = await as_(owner, "share_taste_for_segments", {"opt_in": True})
            assert r.structured_content["opted_in"] and r.structured_content["changed"]
        again = await as_("user:metal0", "share_taste_for_segments", {"opt_in": True})
        assert again.structured_content["changed"] is False and again.structured_content["participants"] == 4
        four = await as_("user:jazz0", "segment_listeners", {"population": "principals", "segments": 2})
        assert four.is_error and "4 members, fewer than the floor of 5" in text_of(four)

        for owner in [o for o in people if not o.startswith("user:outsider")]:
            await as_(owner, "share_taste_for_segments", {"opt_in": True})
        r = await as_("user:jazz3", "segment_listeners", {"population": "principals", "segments": 2})
        assert not r.is_error, text_of(r)
        out = r.structured_content
        assert out["members"] == 12 and out["floor"] == 5
        assert sorted(s["size"] for s in out["segments"]) == [6, 6]
        named = {a["name"] for s in out["segments"] for a in s["defining_artists"]}
        assert named == set(ROCK + JAZZ)
        assert all(s["defining_tags"] == [] for s in out["segments"])  # scrobbles carry no tags

        # With a tagged corpus named, the segments are described by the corpus's tags (and carry its licence).
        tagged = tagged_corpus(settings, folder)
        r = await as_("user:jazz3", "segment_listeners", {"population": "principals", "segments": 2,
                                                          "corpus_id": tagged.id})
        out = r.structured_content
        assert out["licence"] == "CC BY-NC (test)" and out["members"] == 12
        assert {s["defining_tags"][0]["name"] for s in out["segments"]} == {"heavy metal", "cool jazz"}
        assert {s["name"] for s in out["segments"]} == {"heavy metal / Iron Maiden fans", "cool jazz / Miles Davis fans"}
        whole = text_of(r) + json.dumps(out)
        assert "Secret Artist" not in whole  # not opted in: not counted at all
        assert "user:" not in whole and "Only" not in whole and "Song " not in whole and "2024" not in whole

        # Opting out is reversible and counts at once: three metal fans leave, their segment falls below the floor.
        for i in range(3):
            gone = await as_(f"user:metal{i}", "share_taste_for_segments", {"opt_in": False})
            assert gone.structured_content == {**gone.structured_content, "opted_in": False, "changed": True}
        twice = await as_("user:metal0", "share_taste_for_segments", {"opt_in": False})
        assert twice.structured_content["changed"] is False
        r = await as_("user:jazz3", "segment_listeners", {"population": "principals", "segments": 2,
                                                          "small_segments": "suppress"})
        out = r.structured_content
        assert out["members"] == 9 and [s["size"] for s in out["segments"]] == [6]
        assert out["suppressed_members"] == 3 and "Iron Maiden" not in text_of(r)

        low = await as_("user:jazz3", "segment_listeners", {"population": "principals", "min_segment_size": 3})
        assert low.is_error and "min_segment_size" in text_of(low) and "floor of 5" in text_of(low)
        high = await as_("user:jazz3", "segment_listeners", {"population": "principals", "min_segment_size": 10})
        assert high.is_error and "9 members, fewer than the floor of 10" in text_of(high)
        bad = await as_("user:jazz3", "segment_listeners", {"population": "principals", "segments": 1})
        assert bad.is_error and "segments" in text_of(bad)

        # A long history is read up to its newest plays only (bounded time), and the reply says so.
        monkeypatch.setattr("echotune_mcp.toolsets.audience.EVENT_PAGE", 4)
        monkeypatch.setattr("echotune_mcp.toolsets.audience.MAX_PLAYS_PER_PRINCIPAL", 8)
        r = await as_("user:jazz3", "segment_listeners", {"population": "principals", "segments": 2})
        assert r.structured_content["members"] == 9
        assert "9 principal(s) have more than 8 plays" in " ".join(r.structured_content["notes"])


async def test_corpus_population_and_list_corpora_tools(make_client, settings, tmp_path):
    rows = ["user\titem\tweight"]
    for name, (n, artists) in {"r": (8, ROCK), "j": (8, JAZZ)}.items():
        rows += [f"{name}{m}\t{a}\t{5 + m}" for m in range(n) for a in artists]
    tsv = tmp_path / "plays.tsv"
    tsv.write_text("\n".join(rows) + "\n")
    async with make_client() as (client, _app):
        empty = await client.call_tool("list_corpora", {})
        assert empty.structured_content["corpora"] == [] and "corpus add" in empty.structured_content["message"]
        none = await client.call_tool("segment_listeners", {"population": "corpus"})
        assert none.is_error and "corpus_id" in text_of(none) and "no corpus is loaded" in text_of(none)
        info = add_corpus(corpora_dir(settings), [tsv], "interactions", "CC BY-NC 4.0")
        listed = (await client.call_tool("list_corpora", {})).structured_content["corpora"]
        assert [(c["id"], c["licence"], c["commercial_use"], c["users"]) for c in listed] == [
            (info.id, "CC BY-NC 4.0", False, 16)]
        r = await client.call_tool("segment_listeners", {"population": "corpus", "segments": 2})
        assert not r.is_error, text_of(r)
        out = r.structured_content
        assert out["licence"] == "CC BY-NC 4.0" and out["population"] == f"corpus:{info.id}"
        assert sorted(s["size"] for s in out["segments"]) == [8, 8]
        assert "r0" not in json.dumps(out["segments"])
        unknown = await client.call_tool("segment_listeners", {"corpus_id": "corpus_" + "0" * 20})
        assert unknown.is_error and info.id in text_of(unknown)


async def test_synced_top_and_saved_signals_are_not_counted_as_plays(make_client, settings, monkeypatch):
    """A Spotify sync stores top-list entries and saved tracks as non-play signals (recommend/sync.py). Segments
    are built from plays: six jazz listeners who all saved the same metal records stay a jazz segment."""
    from echotune_mcp.recommend.sync import _doc

    folder = settings.allowed_roots[0]
    who = ["local"]
    monkeypatch.setattr("echotune_mcp.toolsets.audience.current_principal", lambda: who[0])
    async with make_client() as (client, app):
        pop = ["Madonna", "Prince", "Cher"]
        for n in range(6):
            owner = f"user:pop{n}"
            path = folder / f"pop{n}.csv"
            path.write_text(scrobbles(pop, 1 + n), encoding="utf-8")
            await import_history(app.storage.listening, owner, [path_source(path, None)], f"imp_pop{n}")
            who[0] = owner
            await client.call_tool("share_taste_for_segments", {"opt_in": True})
        for n in range(6):
            owner = f"user:jazz{n}"
            path = folder / f"jazz{n}.csv"
            path.write_text(scrobbles(JAZZ, 1 + n), encoding="utf-8")
            await import_history(app.storage.listening, owner, [path_source(path, None)], f"imp_{n}")
            saved = [_doc(owner, f"sync_{n}", f"saved{k}{a}", source="spotify", format="spotify_saved",
                          signal=signal, artist=a, track=f"Record {k}", item_key=f"name:{a}\x1frecord {k}")
                     for a in ROCK for k in range(10) for signal in ("saved",)]
            saved += [_doc(owner, f"sync_{n}", f"top{a}", source="spotify", format="spotify_top", signal="top",
                           rank=1, term="long_term", artist=a, track="Hit", item_key=f"name:{a}\x1fhit")
                      for a in ROCK]
            assert await app.storage.listening.insert_absent(saved) == len(saved)
            who[0] = owner
            await client.call_tool("share_taste_for_segments", {"opt_in": True})
        r = await client.call_tool("segment_listeners", {"population": "principals", "segments": 2})
        assert not r.is_error, text_of(r)
        named = {a["name"] for s in r.structured_content["segments"] for a in s["defining_artists"]}
        assert named == set(JAZZ + pop), named  # counted as plays, the saved metal would define the jazz segment
