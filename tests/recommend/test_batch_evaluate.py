"""``echotune-mcp recommend batch`` (file contract, bad input) and the models measured on real Last.fm-2k data.

The real-data tests fit on the full Last.fm-2k matrix (1,892 users × 17,632 artists) with the evaluation's
user-level split; they assert the collaborative models beat popularity and random on held-out users.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import pytest

from echotune_mcp.cli import main
from echotune_mcp.recommend.batch import run_batch
from echotune_mcp.recommend.evaluate import (Split, evaluate, lastfm_tag_features, load_lastfm, load_playlists,
                                             split_users, validation_folds)
from echotune_mcp.recommend.interactions import InputError, Interactions
from echotune_mcp.recommend.models import ALS, EASE, Blend, Content, ItemKNN, Popularity, RandomModel
from tests.conftest import shared_path

# Two taste groups (rock: r*, jazz: j*) plus a popular item most users have; "fan" has all items but one.
TRAIN = {
    "u1": {"r1": 5, "r2": 3, "r3": 1, "pop": 9},
    "u2": {"r1": 2, "r2": 7, "r4": 1, "pop": 4},
    "u3": {"r2": 1, "r3": 2, "r4": 6, "pop": 1},
    "u4": {"j1": 4, "j2": 2, "j3": 8, "pop": 2},
    "u5": {"j1": 1, "j3": 3, "j4": 5, "pop": 3},
    "u6": {"j2": 6, "j4": 2, "pop": 1},
    "u7": {"r1": 1, "r2": 1, "r3": 0},  # weight 0 still means "has it": never recommended back
    "fan": {"r1": 1, "r2": 1, "r3": 1, "r4": 1, "j1": 1, "j2": 1, "j3": 1, "pop": 1},
}
ALL_ITEMS = {it for items in TRAIN.values() for it in items}


def write_train(path: Path, header: str = "user\titem\tweight", rows: dict | None = None) -> Path:
    lines = [header] + [f"{u}\t{i}\t{w}" for u, items in (rows or TRAIN).items() for i, w in items.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def read_recs(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        return list(reader.fieldnames or []), list(reader)


def batch(tmp_path: Path, users: list[str], k: int, *extra: str, train: Path | None = None):
    train = train or write_train(tmp_path / "train.tsv")
    (tmp_path / "users.txt").write_text("\n".join(users) + "\n", encoding="utf-8")
    out = tmp_path / "recs.tsv"
    code = main(["recommend", "batch", "--train", str(train), "--users", str(tmp_path / "users.txt"),
                 "--k", str(k), "--out", str(out), *extra])
    return code, out


def test_batch_writes_k_unseen_rows_per_user_with_header_and_ranks(tmp_path, capsys):
    code, out = batch(tmp_path, ["u1", "u4", "u7"], 3)
    assert code == 0
    header, rows = read_recs(out)
    assert header == ["user", "item", "rank", "score"]
    for user in ("u1", "u4", "u7"):
        mine = [r for r in rows if r["user"] == user]
        assert [int(r["rank"]) for r in mine] == [1, 2, 3]
        scores = [float(r["score"]) for r in mine]
        assert scores == sorted(scores, reverse=True)
        assert not {r["item"] for r in mine} & set(TRAIN[user]), "an item the user has in TRAIN was recommended"
        assert {r["item"] for r in mine} <= ALL_ITEMS
    # the rock listener's first suggestion is the rock item they lack, not a jazz one
    assert next(r["item"] for r in rows if r["user"] == "u1") == "r4"
    assert next(r["item"] for r in rows if r["user"] == "u4") == "j4"
    summary = json.loads(capsys.readouterr().err.strip().splitlines()[-1])["recommend_batch"]
    assert summary["known_users"] == 3 and summary["cold_users"] == 0 and summary["rows_written"] == 9
    assert (out.stat().st_mode & 0o777) == 0o600


def test_cold_user_gets_the_most_popular_items_and_short_catalogue_is_reported(tmp_path, capsys):
    code, out = batch(tmp_path, ["stranger", "fan"], 4)
    assert code == 0
    _, rows = read_recs(out)
    cold = [r["item"] for r in rows if r["user"] == "stranger"]
    assert cold[:3] == ["pop", "r2", "r1"]  # 7, 5 and 4 users (r1 ties with r3: the first-seen item wins)
    assert len(cold) == 4
    # "fan" has 8 of the 9 items: only one unseen item exists, so one row, and the summary says so
    assert [r["item"] for r in rows if r["user"] == "fan"] == ["j4"]
    summary = json.loads(capsys.readouterr().err.strip().splitlines()[-1])["recommend_batch"]
    assert summary["cold_users"] == 1 and summary["short_users"] == 1


def test_item_features_let_a_cold_item_be_recommended(tmp_path):
    feats = tmp_path / "features.csv"
    feats.write_text("item,genre,tempo\n" + "".join(
        f"{it},{'jazz' if it.startswith('j') or it == 'j9' else 'rock'},{100 + n}\n"
        for n, it in enumerate(sorted(ALL_ITEMS) + ["j9"])), encoding="utf-8")
    code, out = batch(tmp_path, ["u4", "u5", "u6"], 3, "--item-features", str(feats))
    assert code == 0
    _, rows = read_recs(out)
    assert "j9" in {r["item"] for r in rows}, "an item known only from FEATURES was never recommended"


@pytest.mark.parametrize("header, body, needle", [
    ("user\titem", "u1\tr1\n", "header"),
    ("u1\tr1\t5", "u2\tr2\t1\n", "header"),
    ("user\titem\tweight", "u1\tr1\tlots\n", "line 2"),
    ("user\titem\tweight", "u1\tr1\t-3\n", "weight"),
    ("user\titem\tweight", "u1\tr1\n", "columns"),
])
def test_bad_train_file_is_refused_naming_the_problem(tmp_path, capsys, header, body, needle):
    train = tmp_path / "train.tsv"
    train.write_text(f"{header}\n{body}", encoding="utf-8")
    code, out = batch(tmp_path, ["u1"], 2, train=train)
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    assert needle in err.replace(":2:", " line 2 ") and str(train) in err


def test_non_numeric_weight_message_says_what_is_allowed(tmp_path):
    train = tmp_path / "train.tsv"
    train.write_text("user\titem\tweight\nu1\tr1\t5\nu1\tr2\tabc\n", encoding="utf-8")
    (tmp_path / "users.txt").write_text("u1\n")
    with pytest.raises(InputError, match=r"train.tsv:3: weight 'abc' is not a number .*finite number >= 0"):
        run_batch(train, tmp_path / "users.txt", 5, tmp_path / "recs.tsv")


@pytest.mark.parametrize("k", ["0", "1001", "ten"])
def test_k_out_of_range_is_refused(tmp_path, capsys, k):
    with pytest.raises(SystemExit) as exc:
        batch(tmp_path, ["u1"], k)  # type: ignore[arg-type]
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--k" in err and "1 to 1000" in err
    with pytest.raises(InputError, match="out of range"):
        run_batch(write_train(tmp_path / "t.tsv"), tmp_path / "users.txt", 0, tmp_path / "r.tsv")


def test_bad_features_and_empty_users_are_refused(tmp_path, capsys):
    feats = tmp_path / "features.csv"
    feats.write_text("item,genre\nr1,rock\nr1,jazz\n", encoding="utf-8")
    code, _ = batch(tmp_path, ["u1"], 2, "--item-features", str(feats))
    assert code == 2 and "appears twice" in capsys.readouterr().err
    code, _ = batch(tmp_path, [""], 2)
    assert code == 2 and "no user ids" in capsys.readouterr().err


# -- real data ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lastfm_test_phase():
    data = load_lastfm(shared_path("data", "recsys", "hetrec2011_lastfm_2k"))
    assert (data.n_users, data.n_items, data.matrix.nnz) == (1892, 17632, 92834)
    return data, split_users(data, holdout=0.2, seed=0).phase("test")


def test_collaborative_models_beat_popularity_and_random_on_held_out_lastfm_users(lastfm_test_phase):
    data, split = lastfm_test_phase
    assert len(split.rows) == 378
    tags = lastfm_tag_features(shared_path("data", "recsys", "hetrec2011_lastfm_2k"), data)(split)
    r = {name: evaluate(model, split, ks=(20,))["recall@20"] for name, model in {
        "random": RandomModel(0), "popularity": Popularity(), "itemknn": ItemKNN(), "ease": EASE(), "als": ALS(),
        "blend": Blend({"ease": EASE(), "als": ALS()}, {"ease": 1.0, "als": 1.0}),
        "hybrid": Blend({"ease": EASE(), "als": ALS(), "tags": Content(tags)}, {"ease": 1.0, "als": 1.0, "tags": 1.0}),
    }.items()}
    assert r["random"] < 0.01 < r["popularity"]
    for name in ("itemknn", "ease", "als", "blend", "hybrid"):
        assert r[name] > 1.8 * r["popularity"], (name, r)
    assert r["blend"] >= max(r["itemknn"], r["als"]), r
    assert r["hybrid"] > r["ease"] * 1.03, r  # tags of fully visible users add to the collaborative part


def test_tag_features_never_use_a_partial_users_tags(lastfm_test_phase):
    """A test user's tags would reveal their hidden artists: only fully visible users' tags may be used."""
    data, split = lastfm_test_phase
    folder = shared_path("data", "recsys", "hetrec2011_lastfm_2k")
    with_all = lastfm_tag_features(folder, data)(Split(split.matrix, split.rows, split.hidden,
                                                       np.arange(data.n_users)))
    scoped = lastfm_tag_features(folder, data)(split)
    assert scoped.nnz < with_all.nnz
    assert len(split.full_users) == data.n_users - len(split.rows)


def test_content_model_continues_held_out_playlists_far_above_popularity():
    data, feats = load_playlists(shared_path("data", "recsys", "tidytuesday_spotify_songs_2020"))
    assert (data.n_users, data.n_items) == (471, 28356)
    split = split_users(data, holdout=0.5, seed=0).phase("test")
    r = {name: evaluate(model, split, ks=(10,))["recall@10"] for name, model in {
        "random": RandomModel(0), "popularity": Popularity(), "content": Content(feats.aligned(data.item_ids)),
    }.items()}
    assert r["content"] > 0.1 > max(r["popularity"], r["random"]) + 0.05, r
    assert np.isfinite(list(r.values())).all()


def test_batch_on_full_lastfm_gives_every_user_k_unseen_items(tmp_path):
    """The issue's scale (1,892 users, 17,632 artists, 92,834 rows) through the file contract end to end; the
    speed claim (< 1 minute on 2 cores) is measured in docs/RECOMMENDATION.md, here only loosely bounded."""
    src = shared_path("data", "recsys", "hetrec2011_lastfm_2k", "user_artists.dat")
    lines = src.read_text(encoding="utf-8").splitlines()[1:]
    train = tmp_path / "train.tsv"
    train.write_text("user\titem\tweight\n" + "\n".join(lines) + "\n", encoding="utf-8")
    seen: dict[str, set[str]] = {}
    for line in lines:
        user, item, _ = line.split("\t")
        seen.setdefault(user, set()).add(item)
    (tmp_path / "users.txt").write_text("\n".join([*seen, "nobody"]) + "\n", encoding="utf-8")
    t0 = time.perf_counter()
    report = run_batch(train, tmp_path / "users.txt", 20, tmp_path / "recs.tsv")
    elapsed = time.perf_counter() - t0
    assert elapsed < 180, elapsed
    header, rows = read_recs(tmp_path / "recs.tsv")
    assert header == ["user", "item", "rank", "score"]
    assert report.rows_written == len(rows) == 20 * (len(seen) + 1) and report.cold_users == 1
    per_user: dict[str, list[str]] = {}
    for r in rows:
        per_user.setdefault(r["user"], []).append(r["item"])
    assert set(per_user) == {*seen, "nobody"}
    for user, items in per_user.items():
        assert len(items) == len(set(items)) == 20
        assert not set(items) & seen.get(user, set()), user


def test_features_sharing_no_item_with_train_are_refused(tmp_path, capsys):
    feats = tmp_path / "features.csv"
    feats.write_text("item,genre\nx1,rock\nx2,jazz\n", encoding="utf-8")
    code, out = batch(tmp_path, ["u1"], 2, "--item-features", str(feats))
    assert code == 2 and not out.exists()
    assert "no item id in FEATURES matches an item in TRAIN" in capsys.readouterr().err


def test_split_never_shows_a_test_user_or_a_hidden_item_to_tuning():
    """Each user has one item nobody else has: whether that column is non-empty tells who is in a matrix."""
    users, items = [], []
    for u in range(200):
        for it in [f"own{u}", *(f"shared{(u + j) % 30}" for j in range(9))]:
            users.append(f"user{u}")
            items.append(it)
    data = Interactions.from_triples(users, items, [1.0] * len(users))
    split = split_users(data, holdout=0.3, seed=3)
    test_users = set(split.test.tolist())
    assert len(test_users) == 40 and len(split.val) == 20
    own = {u: data.item_index[f"own{u}"] for u in range(200)}
    for fold in validation_folds(split, 3, holdout=0.3, seed=3):
        present = fold.matrix.getnnz(axis=0)
        assert all(present[own[u]] == 0 for u in test_users), "a test user's items reached a tuning matrix"
        assert len(fold.rows) == 20
        for r, hidden in zip(fold.rows, fold.hidden):
            assert not set(fold.matrix[r].indices) & set(hidden.tolist())
    test = split.phase("test")
    for r, hidden in zip(test.rows, test.hidden):
        assert len(hidden) == 3 and not set(test.matrix[r].indices) & set(hidden.tolist())


def test_evaluate_command_reports_every_model_and_refuses_a_missing_data_folder(tmp_path, capsys):
    folder = tmp_path / "hetrec2011_lastfm_2k"
    folder.mkdir()
    rng = np.random.default_rng(0)
    lines = ["userID\tartistID\tweight"]
    for u in range(120):  # two taste groups of 40 artists each, 12 artists per user
        group = u % 2
        for a in rng.choice(40, size=12, replace=False):
            lines.append(f"{u}\t{group * 40 + a}\t{rng.integers(1, 500)}")
    (folder / "user_artists.dat").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["recommend", "evaluate", "--dataset", "lastfm", "--data", str(tmp_path), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)["lastfm"]
    assert {"random", "popularity", "itemknn", "ease", "als", "blend"} <= set(res)
    assert res["_protocol"]["test_users"] == 24 and res["_protocol"]["validation_folds"] == 3
    assert res["blend"]["recall@10"] > res["random"]["recall@10"]
    assert main(["recommend", "evaluate", "--dataset", "playlists", "--data", str(tmp_path)]) == 2
    assert "spotify_songs_part" in capsys.readouterr().err
