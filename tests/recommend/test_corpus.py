"""Operator-loaded corpora (recommend/corpus.py, ``echotune-mcp recommend corpus``) on the real shared data:
Last.fm-2k with artist names and tags, the three TidyTuesday playlist CSVs; licence required, duplicates
detected, malformed rows counted, writes atomic and private."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import numpy as np
import pytest

from echotune_mcp.recommend import corpus as corpus_mod
from echotune_mcp.recommend.corpus import (CorpusError, add_corpus, corpora_dir, list_corpora, load_corpus,
                                           remove_corpus)
from echotune_mcp.recommend.cli import recommend_main
from tests.conftest import shared_path

LICENCE = "HetRec 2011 / Last.fm terms: non-commercial research"


def lastfm() -> Path:
    return shared_path("data", "recsys", "hetrec2011_lastfm_2k")


def playlist_parts() -> list[Path]:
    parts = sorted(shared_path("data", "recsys", "tidytuesday_spotify_songs_2020").glob("spotify_songs_part*.csv"))
    assert len(parts) == 3
    return parts


@pytest.fixture(scope="module")
def lastfm_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "corpora"
    folder = lastfm()
    info = add_corpus(root, [folder / "user_artists.dat"], "interactions", LICENCE, name="Last.fm-2k",
                      items_file=folder / "artists.dat",
                      tag_files=[folder / "user_taggedartists.dat", folder / "user_taggedartists_2.dat"],
                      tag_names=folder / "tags.dat")
    return root, info


def test_lastfm_artists_named_and_tagged(lastfm_corpus):
    root, info = lastfm_corpus
    assert (info.users, info.format, info.licence, info.commercial_use) == (1892, "interactions", LICENCE, False)
    assert info.malformed_rows == 0
    # 17,632 artist ids, of which some fold to the same name and are merged; 92,834 rows less those merges.
    assert 17_500 < info.items <= 17_632 and 92_000 < info.interactions <= 92_834
    corpus = load_corpus(root, info.id)
    assert corpus.matrix.shape == (info.users, info.items) and corpus.matrix.dtype == np.float32
    assert len(corpus.users) == info.users and "2" in corpus.users
    idx = corpus.item_index()
    radiohead = corpus.items[idx["artist:radiohead"]]
    assert radiohead.kind == "artist" and radiohead.artists == ("Radiohead",) and radiohead.title is None
    assert "alternative" in radiohead.tags[:5] and all(t == t.lower() for t in radiohead.tags)
    # User 2's top artist in user_artists.dat is artistID 51 (Duran Duran, 13,883 plays).
    row = corpus.matrix[corpus.users.index("2")]
    assert row[0, idx["artist:duran duran"]] == pytest.approx(13883)
    # tags.dat is Latin-1 in places; those tags come through decoded, not as replacement characters.
    all_tags = {t for it in corpus.items for t in it.tags}
    assert "rock français" in all_tags and not any("\ufffd" in t for t in all_tags)
    assert info.tagged_items > 9000
    assert load_corpus(root, info.id) is corpus  # cached per (id, version)


def test_files_private_and_listed_with_licence(lastfm_corpus):
    root, info = lastfm_corpus
    folder = root / info.id
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for f in folder.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    listed = {c.id: c for c in list_corpora(root)}
    assert listed[info.id].licence == LICENCE and listed[info.id].source_files[0]["name"] == "user_artists.dat"
    assert {s["role"] for s in listed[info.id].source_files} == {"data", "items", "tags", "tag_names"}


def test_same_files_again_report_the_existing_corpus(lastfm_corpus):
    root, info = lastfm_corpus
    folder = lastfm()
    again = add_corpus(root, [folder / "user_artists.dat"], "interactions", "another licence text",
                       items_file=folder / "artists.dat",
                       tag_files=[folder / "user_taggedartists_2.dat", folder / "user_taggedartists.dat"],
                       tag_names=folder / "tags.dat")
    assert again.already_present and again.id == info.id and again.licence == LICENCE
    assert [c.id for c in list_corpora(root)].count(info.id) == 1 and len(list_corpora(root)) == 1
    # Different files (no names) are a different corpus.
    other = add_corpus(root, [folder / "user_artists.dat"], "interactions", LICENCE)
    try:
        assert not other.already_present and other.id != info.id
        assert load_corpus(root, other.id).items[0].id.isdigit()  # no names: the file's own artist ids
    finally:
        assert remove_corpus(root, other.id)


def test_playlists_three_parts(tmp_path):
    root = tmp_path / "corpora"
    info = add_corpus(root, playlist_parts(), "playlists", "CC0 (TidyTuesday / spotifyr)", name="TidyTuesday")
    assert info.users == 471 and 28_000 < info.items < 29_000 and info.malformed_rows == 0
    corpus = load_corpus(root, info.id)
    assert corpus.matrix.max() == 1.0  # membership, a track listed twice in one playlist counts once
    assert all(it.kind == "track" and it.id == f"spotify:track:{it.spotify_id}" for it in corpus.items)
    ed = corpus.items[corpus.item_index()["spotify:track:6f807x0ima9a1j3VPbc7VN"]]
    assert ed.title.startswith("I Don't Care") and ed.artists == ("Ed Sheeran",) and ed.popularity == 66
    assert {"pop", "dance pop"} <= set(ed.tags)
    assert ed.features["tempo"] == pytest.approx(122.036) and ed.features["key"] == 6
    assert set(ed.features) == set(corpus_mod.FEATURE_KEYS)
    # Every playlist's tracks are the rows it has in the CSVs.
    assert corpus.matrix.getnnz(axis=1).min() >= 1 and corpus.matrix.nnz == info.interactions


def test_licence_required(tmp_path, capsys):
    folder = lastfm()
    for licence in ("", "   "):
        with pytest.raises(CorpusError, match="licence"):
            add_corpus(tmp_path, [folder / "user_artists.dat"], "interactions", licence)
    assert recommend_main(["corpus", "add", str(folder / "user_artists.dat"), "--format", "interactions",
                           "--data-dir", str(tmp_path)]) == 2
    assert "--licence" in capsys.readouterr().err
    assert list_corpora(tmp_path / "corpora") == []


def test_malformed_rows_counted_and_wrong_header_named(tmp_path):
    tsv = tmp_path / "plays.tsv"
    tsv.write_text("user\titem\tweight\nu1\tspotify:track:6f807x0ima9a1j3VPbc7VN\t3\nu1\tx\tmany\n"
                   "u2\tx\t2\tjunk\tmore\nu2\ty\t-1\nu2\tx\t1\n\n")
    info = add_corpus(tmp_path / "c", [tsv], "interactions", "mine", item_kind="track")
    assert (info.users, info.items, info.interactions, info.malformed_rows) == (2, 2, 2, 3)
    assert any("plays.tsv:3" in e and "many" in e for e in info.malformed_examples)
    items = {it.id: it for it in load_corpus(tmp_path / "c", info.id).items}
    assert items["spotify:track:6f807x0ima9a1j3VPbc7VN"].spotify_id == "6f807x0ima9a1j3VPbc7VN"
    assert items["x"].kind == "track" and items["x"].title is None

    with pytest.raises(CorpusError, match="user<TAB>item<TAB>weight"):
        add_corpus(tmp_path / "c", [lastfm() / "artists.dat"], "interactions", "x")
    with pytest.raises(CorpusError, match="playlist_id"):
        add_corpus(tmp_path / "c", [tsv], "playlists", "x")
    bad = tmp_path / "bad.tsv"
    bad.write_text("user\titem\tweight\nu1\tx\tnope\n")
    with pytest.raises(CorpusError, match="no usable interaction rows"):
        add_corpus(tmp_path / "c", [bad], "interactions", "x")
    with pytest.raises(CorpusError, match="allowed: interactions, playlists"):
        add_corpus(tmp_path / "c", [tsv], "songs", "x")
    assert len(list_corpora(tmp_path / "c")) == 1


def test_a_failed_write_leaves_nothing(tmp_path, monkeypatch):
    tsv = tmp_path / "plays.tsv"
    tsv.write_text("user\titem\tweight\nu1\ta\t1\nu2\tb\t2\n")
    real = corpus_mod._write_private

    def failing(path, data):
        if path.name == "matrix.npz":
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(corpus_mod, "_write_private", failing)
    with pytest.raises(OSError):
        add_corpus(tmp_path / "c", [tsv], "interactions", "mine")
    assert list_corpora(tmp_path / "c") == []
    assert [p.name for p in (tmp_path / "c").iterdir()] == [".lock"]
    monkeypatch.setattr(corpus_mod, "_write_private", real)
    info = add_corpus(tmp_path / "c", [tsv], "interactions", "mine")
    assert not info.already_present and load_corpus(tmp_path / "c", info.id).matrix.nnz == 2


def test_cli_add_list_remove(tmp_path, capsys, settings):
    parts = playlist_parts()
    data = ["--data-dir", str(tmp_path)]
    assert recommend_main(["corpus", "add", *map(str, parts), "--format", "playlists",
                           "--licence", "CC0", "--commercial-use", "--name", "TidyTuesday", *data]) == 0
    added = json.loads(capsys.readouterr().out)["corpus"]
    assert added["users"] == 471 and added["commercial_use"] and not added["already_present"]
    assert recommend_main(["corpus", "add", *map(str, parts), "--format", "playlists", "--licence", "CC0",
                           *data]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["corpus"]["already_present"] and "already" in out.err
    assert recommend_main(["corpus", "list", *data]) == 0
    listing = capsys.readouterr().out
    assert added["id"] in listing and "licence: CC0 (commercial use allowed)" in listing
    assert listing.count("\n") == 1
    assert recommend_main(["corpus", "remove", added["id"], *data]) == 0
    assert recommend_main(["corpus", "remove", added["id"], *data]) == 1
    assert list_corpora(tmp_path / "corpora") == []
    with pytest.raises(KeyError):
        load_corpus(tmp_path / "corpora", added["id"])
    assert corpora_dir(settings) == settings.data_dir / "corpora"


def test_replace_keeps_the_id_and_bumps_the_version(tmp_path):
    root = tmp_path / "corpora"
    first = tmp_path / "v1.tsv"
    first.write_text("user\titem\tweight\nu1\ta\t1\nu2\tb\t2\n")
    info = add_corpus(root, [first], "interactions", "mine", name="plays")
    assert load_corpus(root, info.id).matrix.shape == (2, 2)  # now cached
    second = tmp_path / "v2.tsv"
    second.write_text("user\titem\tweight\nu1\ta\t1\nu2\tb\t2\nu3\tc\t5\n")
    with pytest.raises(CorpusError, match="no corpus 'corpus_x' to replace"):
        add_corpus(root, [second], "interactions", "mine", replace="corpus_x")
    newer = add_corpus(root, [second], "interactions", "mine, v2", replace=info.id)
    assert (newer.id, newer.version, newer.name, newer.added_at) == (info.id, 2, "plays", info.added_at)
    assert [(c.id, c.version, c.licence) for c in list_corpora(root)] == [(info.id, 2, "mine, v2")]
    assert load_corpus(root, info.id).matrix.shape == (3, 3)  # the new version, not the cached old one
    assert add_corpus(root, [second], "interactions", "x", replace=info.id).already_present
    assert sorted(p.name for p in root.iterdir()) == [".lock", info.id]  # nothing left aside
