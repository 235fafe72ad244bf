"""``echotune-mcp recommend batch|evaluate|corpus|fit``: offline recommendation, its measurement, corpora, models.

``batch`` is the file-in/file-out contract of issue #14 item 5 (see recommend/batch.py for what it guarantees).
``evaluate`` runs the protocol of docs/RECOMMENDATION.md on the public data sets under ``--data``
(Last.fm-2k and the TidyTuesday Spotify playlists) and prints a table (or JSON with ``--json``).
``corpus add|list|remove`` manages the operator-loaded corpora (recommend/corpus.py) the server recommends and
segments from; each is stored with the licence it was loaded under. ``fit --corpus ID`` fits the served model
over a corpus (recommend/fitted.py) as a new version, the same work as the fit_recommender tool.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .batch import K_MAX, run_batch
from .corpus import CORPUS_FORMATS
from .interactions import InputError


def _k(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not an integer (allowed: 1 to {K_MAX})") from None
    if not 1 <= value <= K_MAX:
        raise argparse.ArgumentTypeError(f"{value} is out of range (allowed: 1 to {K_MAX})")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="echotune-mcp recommend", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="action", required=True)
    b = sub.add_parser("batch", help="TRAIN.tsv + USERS.txt -> RECS.tsv with K rows per user")
    b.add_argument("--train", required=True, help="TSV with header user<TAB>item<TAB>weight")
    b.add_argument("--users", required=True, help="one user id per line")
    b.add_argument("--k", required=True, type=_k, help=f"rows per user, 1 to {K_MAX}")
    b.add_argument("--out", required=True, help="RECS.tsv to write (header user<TAB>item<TAB>rank<TAB>score)")
    b.add_argument("--item-features", default=None,
                   help="CSV: item id first, then numeric or text (tokens split on '|') feature columns")
    b.add_argument("--seed", type=int, default=0, help="seed for the validation split and ALS (default 0)")
    e = sub.add_parser("evaluate", help="recall@K and NDCG@K of every model on Last.fm-2k and the playlists")
    e.add_argument("--data", default="../shared/data/recsys",
                   help="folder holding hetrec2011_lastfm_2k/ and tidytuesday_spotify_songs_2020/")
    e.add_argument("--dataset", choices=["lastfm", "playlists", "all"], default="all")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--json", action="store_true", help="print the results as one JSON object")
    c = sub.add_parser("corpus", help="add | list | remove the corpora the server recommends and segments from")
    csub = c.add_subparsers(dest="corpus_action", required=True)
    ca = csub.add_parser("add", help="store interaction or playlist files as a corpus, with its licence")
    ca.add_argument("files", nargs="+", help="data files (several part files of one data set at once are fine)")
    ca.add_argument("--format", required=True, choices=list(CORPUS_FORMATS))
    ca.add_argument("--licence", "--license", dest="licence", default=None,
                    help="the licence the data is used under (required), e.g. 'CC BY-NC 4.0'")
    ca.add_argument("--commercial-use", action="store_true",
                    help="the licence allows commercial use (default: not, and results say so)")
    ca.add_argument("--name", default=None, help="a display name (default: the first file's name)")
    ca.add_argument("--items", default=None, help="interactions: artists.dat-style id<TAB>name file")
    ca.add_argument("--tags", action="append", default=[],
                    help="interactions: user_taggedartists.dat-style userID<TAB>artistID<TAB>tagID file "
                         "(repeatable; needs --items)")
    ca.add_argument("--tag-names", default=None, help="interactions: tags.dat-style tagID<TAB>tagValue file")
    ca.add_argument("--item-kind", choices=["artist", "track"], default="artist",
                    help="interactions: what an unnamed item id is (default artist; spotify:track: ids are tracks)")
    ca.add_argument("--replace", default=None, metavar="ID",
                    help="these files supersede corpus ID (a newer export): it keeps its id, its version goes up")
    for q in (ca, csub.add_parser("list", help="every corpus with its licence and size"),
              (cr := csub.add_parser("remove", help="delete a corpus by id"))):
        q.add_argument("--data-dir", default=None, help="the server's data folder (ECHOTUNE_DATA_DIR)")
    cr.add_argument("corpus_id")
    f = sub.add_parser("fit", help="fit the served recommendation model over a corpus (a new model version)")
    f.add_argument("--corpus", required=True, help="the corpus id (see `corpus list`)")
    f.add_argument("--seed", type=int, default=0, help="seed for the validation split and ALS (default 0)")
    f.add_argument("--data-dir", default=None, help="the server's data folder (ECHOTUNE_DATA_DIR)")
    return p


def recommend_main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.action == "batch":
        try:
            report = run_batch(args.train, args.users, args.k, args.out, args.item_features, seed=args.seed)
        except InputError as exc:
            print(f"echotune-mcp recommend batch: {exc}", file=sys.stderr)
            return 2
        print(json.dumps({"recommend_batch": report.__dict__}), file=sys.stderr)
        return 0
    if args.action == "corpus":
        return _corpus(args)
    if args.action == "fit":
        return _fit(args)
    return _evaluate(args)


def _corpus(args: argparse.Namespace) -> int:
    from ..config import Settings
    from .corpus import CorpusError, add_corpus, corpora_dir, list_corpora, remove_corpus

    overrides = {"data_dir": Path(args.data_dir).expanduser()} if args.data_dir else {}
    root = corpora_dir(Settings.from_env(**overrides))
    if args.corpus_action == "list":
        if not list_corpora(root):
            print(f"no corpus in {root}; add one with `echotune-mcp recommend corpus add FILE... --format "
                  "interactions|playlists --licence TEXT`", file=sys.stderr)
        for info in list_corpora(root):
            use = "commercial use allowed" if info.commercial_use else "non-commercial"
            print(f"{info.id}\t{info.name}\t{info.format}\t{info.users} users x {info.items} items, "
                  f"{info.interactions} interactions\tlicence: {info.licence} ({use})")
        return 0
    if args.corpus_action == "remove":
        if not remove_corpus(root, args.corpus_id):
            print(f"echotune-mcp recommend corpus remove: no corpus {args.corpus_id!r} (see `corpus list`)",
                  file=sys.stderr)
            return 1
        print(f"removed {args.corpus_id}")
        return 0
    if not (args.licence or "").strip():
        print("echotune-mcp recommend corpus add: --licence is required: the licence the data is used under "
              "(e.g. --licence 'CC BY-NC 4.0'); it is recorded and reported with the corpus", file=sys.stderr)
        return 2
    try:
        info = add_corpus(root, [Path(f) for f in args.files], args.format, args.licence, name=args.name,
                          items_file=Path(args.items) if args.items else None, commercial_use=args.commercial_use,
                          tag_files=[Path(t) for t in args.tags],
                          tag_names=Path(args.tag_names) if args.tag_names else None, item_kind=args.item_kind,
                          replace=args.replace)
    except CorpusError as exc:
        print(f"echotune-mcp recommend corpus add: {exc}", file=sys.stderr)
        return 2
    report = info.model_dump()
    report["already_present"] = info.already_present
    print(json.dumps({"corpus": report}))
    if info.already_present:
        print(f"these files are already corpus {info.id} ({info.name}); nothing added", file=sys.stderr)
    elif info.malformed_rows:
        print(f"{info.malformed_rows} malformed rows skipped, e.g. {'; '.join(info.malformed_examples)}",
              file=sys.stderr)
    return 0


def _fit(args: argparse.Namespace) -> int:
    """Fit in this process, progress on stderr; the stored provenance (with its version) as JSON on stdout."""
    from ..config import Settings
    from .fitted import fit_and_save

    overrides = {"data_dir": Path(args.data_dir).expanduser()} if args.data_dir else {}
    settings = Settings.from_env(**overrides)
    try:
        provenance = fit_and_save(settings, args.corpus, seed=args.seed,
                                  progress=lambda f, m: print(f"{f:4.0%} {m}", file=sys.stderr))
    except KeyError:
        print(f"echotune-mcp recommend fit: no corpus {args.corpus!r} (see `echotune-mcp recommend corpus list`)",
              file=sys.stderr)
        return 2
    print(json.dumps({"fitted": provenance}))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluate import lastfm_tag_features, load_lastfm, load_playlists, run

    root = Path(args.data)
    log = (lambda _m: None) if args.json else (lambda m: print(m, file=sys.stderr))
    results: dict[str, dict] = {}
    if args.dataset in ("lastfm", "all"):
        folder = root / "hetrec2011_lastfm_2k"
        if not (folder / "user_artists.dat").is_file():
            print(f"echotune-mcp recommend evaluate: {folder}/user_artists.dat not found (--data)", file=sys.stderr)
            return 2
        data = load_lastfm(folder)
        tags = lastfm_tag_features(folder, data) if (folder / "user_taggedartists.dat").is_file() else None
        results["lastfm"] = run(data, features=tags, holdout=0.2, seed=args.seed, log=log)
    if args.dataset in ("playlists", "all"):
        folder = root / "tidytuesday_spotify_songs_2020"
        if not list(folder.glob("spotify_songs_part*.csv")):
            print(f"echotune-mcp recommend evaluate: no spotify_songs_part*.csv in {folder} (--data)",
                  file=sys.stderr)
            return 2
        data, feats = load_playlists(folder)
        results["playlists"] = run(data, features=feats.aligned(data.item_ids), holdout=0.5, seed=args.seed,
                                   log=log)
    if args.json:
        print(json.dumps(results))
        return 0
    for name, res in results.items():
        proto = res["_protocol"]
        print(f"\n{name}: {proto['users']} users x {proto['items']} items, {proto['interactions']} interactions; "
              f"test users {proto['test_users']}, hidden fraction {proto['holdout']}, seed {proto['seed']}")
        print(f"blend weights (validation users): {proto['blend_weights']}")
        print("| model | recall@10 | NDCG@10 | recall@20 | NDCG@20 | fit s |\n|---|---|---|---|---|---|")
        for model, m in res.items():
            if model.startswith("_"):
                continue
            print(f"| {model} | {m['recall@10']:.4f} | {m['ndcg@10']:.4f} | {m['recall@20']:.4f} | "
                  f"{m['ndcg@20']:.4f} | {m['fit_s']:.2f} |")
    return 0
