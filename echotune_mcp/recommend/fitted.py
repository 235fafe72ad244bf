"""The served recommendation model: a blend fitted over one corpus, stored as a versioned artifact.

What is fitted (once per corpus version, as a job): popularity, item-kNN similarities, EASE weights on the most
played items, ALS item factors (``implicit``), and a tag/genre/audio-feature content matrix when the corpus has
them; the blend weights are tuned on validation users carved from the corpus (the batch recipe), measured on
them, and stored with the model. Layout: ``data_dir/models/recommend/<corpus_id>/v<N>/`` holding
``arrays.npz`` (plain arrays, loaded without pickle) and ``provenance.json`` (corpus id, version, licence,
source sha256s, params, weights, validation metrics, fit time, code version). A version is written in a temp
dir and renamed into place, so a reader sees whole versions only, and older versions stay until a newer one is
complete (``KEEP_VERSIONS`` are kept).

Query time (incremental refresh): a user is not in the fitted matrix. Their row (their own plays mapped to
corpus items, plus seeds) is folded in: item-kNN, EASE and content score the row directly, and ALS solves the
user's factors against the fixed item factors with ``implicit``'s ``recalculate_user``. New plays therefore
need no refit; only a changed corpus does (``stale`` tells the caller).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from .. import __version__
from .ann import ANN_THRESHOLD, ItemIndex
from .corpus import Corpus, corpora_dir, load_corpus
from .evaluate import Split, metrics, split_users, tune_blend
from .interactions import Interactions, unit_rows_sparse
from .models import ALS, EASE, Content, ItemKNN, Model, Popularity, top_k, zscore

KEEP_VERSIONS = 3
MIN_TUNE_USERS = 50
# Used when a corpus has too few users to carve validation users from (the batch defaults, docs/RECOMMENDATION.md).
DEFAULT_WEIGHTS = {"popularity": 0.0, "itemknn": 0.5, "ease": 1.0, "als": 1.0, "content": 1.0}
ALS_PARAMS = {"factors": 64, "regularization": 0.05, "iterations": 15, "alpha": 20.0}
EASE_PARAMS = {"l2": 50.0, "max_items": 3000}
KNN_PARAMS = {"neighbours": 400}
TOOL = "fit_recommender"
# From this many items on, the ALS component answers from a usearch HNSW index over the item factors, built at fit
# time and stored with the version (ann.py: exact scoring passes ~4 ms per query on one core there); the other
# components are sparse products and stay exact. Items outside the index's candidates get the lowest candidate score.
ANN_MIN_ITEMS = ANN_THRESHOLD
ANN_CANDIDATES = 2000
ANN_FILE = "als.usearch"
# Where CLAP weights are present, the fit embeds the corpus's most used tags (CLAP text embeddings) so a prompt can
# reach tags it does not name ("dreamy guitar haze" -> shoegaze): only the prompt is embedded per request.
TAG_VOCAB = 2000
Progress = Callable[[float, str], None]


def models_root(settings) -> Path:
    return Path(settings.data_dir) / "models" / "recommend"


def _content_matrix(corpus: Corpus) -> sp.csr_matrix | None:
    """Items x (tags + standardised audio features), rows L2-normalised; None when the corpus has neither."""
    vocab: dict[str, int] = {}
    rows, cols, vals = [], [], []
    for i, item in enumerate(corpus.items):
        for rank, tag in enumerate(item.tags):
            rows.append(i)
            cols.append(vocab.setdefault("tag:" + tag, len(vocab)))
            vals.append(1.0 / (1.0 + 0.1 * rank))  # tags come most frequent first
    keys = sorted({k for it in corpus.items for k in it.features})
    if keys:
        table = np.full((len(corpus.items), len(keys)), np.nan, dtype=np.float64)
        for i, item in enumerate(corpus.items):
            for j, key in enumerate(keys):
                if key in item.features:
                    table[i, j] = item.features[key]
        mean, std = np.nanmean(table, axis=0), np.nanstd(table, axis=0)
        z = (table - mean) / np.where(std > 0, std, 1.0)
        base = len(vocab)
        for i, j in zip(*np.nonzero(~np.isnan(z))):
            rows.append(int(i))
            cols.append(base + int(j))
            vals.append(float(z[i, j]) * 0.5)
        n_cols = base + len(keys)
    else:
        n_cols = len(vocab)
    if not rows:
        return None
    m = sp.csr_matrix((np.asarray(vals, np.float32), (rows, cols)), shape=(len(corpus.items), n_cols))
    return unit_rows_sparse(m)


class _Prefitted(Model):
    """A component already fitted on a split: lets tune_blend reuse it instead of fitting it again."""

    def __init__(self, model: Model):
        self.model = model

    def fit(self, x: sp.csr_matrix) -> _Prefitted:
        return self

    def score(self, rows: np.ndarray) -> np.ndarray:
        return self.model.score(rows)


def _makers(content: sp.csr_matrix | None, seed: int) -> dict[str, Callable[[], Model]]:
    out: dict[str, Callable[[], Model]] = {
        "popularity": Popularity, "itemknn": lambda: ItemKNN(**KNN_PARAMS), "ease": lambda: EASE(**EASE_PARAMS),
        "als": lambda: ALS(seed=seed, **ALS_PARAMS)}
    if content is not None:
        out["content"] = lambda: Content(content)
    return out


@dataclass
class Fitted:
    """One stored model version, ready to score folded-in user rows (item space = ``item_ids``)."""

    corpus_id: str
    version: int
    provenance: dict[str, Any]
    item_ids: list[str]
    weights: dict[str, float]
    popularity: np.ndarray  # log1p(users per item)
    knn: sp.csr_matrix | None = None
    ease_items: np.ndarray | None = None
    ease_b: np.ndarray | None = None
    als_items: np.ndarray | None = None
    content: sp.csr_matrix | None = None
    als_index: ItemIndex | None = None
    tag_vocab: list[str] | None = None  # the tags CLAP embedded at fit time, and their unit-length embeddings
    tag_clap: np.ndarray | None = None
    path: Path | None = None
    _als: Any = field(default=None, repr=False)
    _content_t: sp.csr_matrix | None = field(default=None, repr=False)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def describe(self) -> dict[str, Any]:
        p = self.provenance
        return {"corpus_id": self.corpus_id, "corpus_version": p["corpus"]["version"], "model_version": self.version,
                "licence": p["corpus"]["licence"], "commercial_use": p["corpus"]["commercial_use"],
                "fitted_at": p["created_at"], "weights": self.weights,
                "als_retrieval": "ann" if self.als_index is not None else "exact"}

    # -- scoring a folded-in row ---------------------------------------------------------------------------
    def components(self, row: sp.csr_matrix) -> dict[str, np.ndarray]:
        """Raw scores of every weighted component for one user row (1 x n_items, weights >= 0)."""
        row = sp.csr_matrix(row, dtype=np.float32)
        out: dict[str, np.ndarray] = {}
        w = self.weights
        if w.get("popularity"):
            out["popularity"] = self.popularity.astype(np.float32)
        if w.get("itemknn") and self.knn is not None:
            out["itemknn"] = np.asarray((row @ self.knn).todense(), dtype=np.float32).ravel()
        if w.get("ease") and self.ease_b is not None and self.ease_items is not None:
            s = np.zeros(self.n_items, dtype=np.float32)
            s[self.ease_items] = np.asarray(row[:, self.ease_items] @ self.ease_b).ravel()
            out["ease"] = s
        if w.get("als") and self.als_items is not None:
            u = self.user_factors(row)
            if self.als_index is not None:  # a large catalogue: the best candidates from the HNSW graph
                found = self.als_index.search(u, min(ANN_CANDIDATES, self.n_items))
                s = np.full(self.n_items, found.scores.min() if found.scores.size else 0.0, dtype=np.float32)
                s[found.items] = found.scores
                out["als"] = s
            else:
                out["als"] = self.als_items @ u
        if w.get("content") and self.content is not None:
            if self._content_t is None:
                self._content_t = self.content.T.tocsr()
            profile = row @ self.content
            out["content"] = np.asarray((profile @ self._content_t).todense(), dtype=np.float32).ravel()
        return out

    def user_factors(self, row: sp.csr_matrix) -> np.ndarray:
        """ALS fold-in: the user's factors against the fixed item factors (implicit's recalculate_user)."""
        if self._als is None:
            from implicit.cpu.als import AlternatingLeastSquares

            p = self.provenance["params"]["als"]
            model = AlternatingLeastSquares(factors=self.als_items.shape[1], regularization=p["regularization"],
                                            alpha=p["alpha"], num_threads=1)
            model.item_factors = self.als_items
            model.user_factors = np.zeros((1, self.als_items.shape[1]), dtype=np.float32)
            self._als = model
        if row.nnz == 0:
            return np.zeros(self.als_items.shape[1], dtype=np.float32)
        return np.asarray(self._als.recalculate_user(0, sp.csr_matrix(row, dtype=np.float32)), dtype=np.float32)

    def score(self, row: sp.csr_matrix) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The blend (weighted per-row z-scores, as models.Blend) and the raw components behind it."""
        comps = self.components(row)
        total = np.zeros(self.n_items, dtype=np.float32)
        for key, s in comps.items():
            total += np.float32(self.weights[key]) * zscore(s[None, :])[0]
        return total, comps


# -- fitting -------------------------------------------------------------------------------------------------------
def fit_corpus(corpus: Corpus, *, seed: int = 0, progress: Progress | None = None,
               settings=None) -> tuple[dict, dict[str, Any], ItemIndex | None]:
    """Fit the blend over ``corpus``: (arrays to store, provenance, the ALS item index for a large catalogue). Weights are tuned on validation users
    carved from the corpus when it has enough users with 2+ items, else the batch defaults."""
    say = progress or (lambda _f, _m: None)
    t0 = time.perf_counter()
    x = sp.csr_matrix(corpus.matrix, dtype=np.float32)
    content = _content_matrix(corpus)
    makers = _makers(content, seed)
    eligible = int((np.diff(x.indptr) >= 2).sum())
    validation: dict[str, Any] = {}
    if eligible >= MIN_TUNE_USERS:
        say(0.05, f"tuning blend weights on validation users ({eligible} users with 2+ items)")
        data = Interactions(x, [str(u) for u in range(x.shape[0])], [str(i) for i in range(x.shape[1])])
        split = split_users(data, val_frac=0.1, test_frac=0.0, holdout=0.2, seed=seed)
        val = split.phase("validation")
        fitted_val: dict[str, Model] = {}
        for i, (key, make) in enumerate(makers.items()):
            say(0.05 + 0.4 * i / len(makers), f"validation fit: {key}")
            fitted_val[key] = make().fit(val.matrix)
        weights = tune_blend({k: (lambda _s, m=m: _Prefitted(m)) for k, m in fitted_val.items()}, [val], k=20)
        if not any(weights.values()):
            weights = {key: DEFAULT_WEIGHTS[key] for key in makers}
        validation = {"users": len(split.val), "holdout": 0.2, "k": 20, "note": "the users the weights were tuned on",
                      "blend": _measure(val, fitted_val, weights), "popularity": _measure(val, fitted_val,
                                                                                          {"popularity": 1.0})}
        weights_from = f"tuned on {len(split.val)} validation users carved from the corpus"
    else:
        weights = {key: DEFAULT_WEIGHTS[key] for key in makers}
        weights_from = f"defaults (the corpus has {eligible} users with 2+ items, fewer than {MIN_TUNE_USERS})"
    say(0.5, "fitting on the whole corpus")
    arrays: dict[str, np.ndarray] = {"popularity": Popularity().fit(x).item_score.astype(np.float32)}
    say(0.55, "item-kNN")  # always: its neighbours are the reasons given ("listeners of X also play this")
    knn = ItemKNN(**KNN_PARAMS).fit(x).sim
    arrays.update(knn_data=knn.data, knn_indices=knn.indices, knn_indptr=knn.indptr)
    if weights.get("ease"):
        say(0.65, "EASE")
        ease = EASE(**EASE_PARAMS).fit(x)
        arrays.update(ease_items=ease.items.astype(np.int64), ease_b=ease.b)
    say(0.75, "ALS")  # always: its item vectors are what diversity (MMR) and large-catalogue retrieval use
    arrays["als_items"] = ALS(seed=seed, **ALS_PARAMS).fit(x).item_factors
    index = None
    if x.shape[1] >= ANN_MIN_ITEMS:
        say(0.85, f"HNSW index over {x.shape[1]} ALS item vectors")
        index = ItemIndex(arrays["als_items"], backend="ann")
    if weights.get("content") and content is not None:
        arrays.update(content_data=content.data, content_indices=content.indices, content_indptr=content.indptr,
                      content_shape=np.asarray(content.shape, dtype=np.int64))
    arrays["item_ids"] = np.asarray([it.id for it in corpus.items], dtype=str)
    prompt_embeddings = _embed_tags(corpus, settings, arrays, say)
    info = corpus.info
    kinds = sorted({it.kind for it in corpus.items})
    provenance = {
        "item_kind": kinds[0] if len(kinds) == 1 else "mixed",
        "corpus": {"id": info.id, "name": info.name, "version": info.version, "format": info.format,
                   "licence": info.licence, "commercial_use": info.commercial_use,
                   "source_files": [{k: f[k] for k in ("name", "sha256", "bytes") if k in f}
                                    for f in info.source_files],
                   "users": int(x.shape[0]), "items": int(x.shape[1]), "interactions": int(x.nnz)},
        "params": {"seed": seed, "als": ALS_PARAMS, "ease": EASE_PARAMS, "itemknn": KNN_PARAMS,
                   "content": "tags + standardised audio features" if content is not None else None,
                   "als_retrieval": (f"ann (usearch HNSW, {ANN_CANDIDATES} candidates)" if index is not None
                                     else "exact"),
                   "prompt_embeddings": prompt_embeddings},
        "weights": weights, "weights_from": weights_from, "validation": validation,
        "fit_s": round(time.perf_counter() - t0, 2), "created_at": time.time(),
        "code_version": __version__,
    }
    say(0.95, "fitted")
    return arrays, provenance, index


def _embed_tags(corpus: Corpus, settings, arrays: dict[str, np.ndarray], say: Progress) -> str:
    """CLAP text embeddings of the ``TAG_VOCAB`` most used tags into ``arrays``; what was done, for provenance."""
    counts: dict[str, int] = {}
    for item in corpus.items:
        for tag in item.tags:
            counts[tag] = counts.get(tag, 0) + 1
    if not counts:
        return "none (the corpus has no tags)"
    if settings is None or not hasattr(settings, "clap_model"):
        return "none (no settings to find CLAP weights with)"
    from . import sound

    vocab = sorted(counts, key=lambda t: (-counts[t], t))[:TAG_VOCAB]
    batches = [[f"{t} music" for t in vocab[lo:lo + 64]] for lo in range(0, len(vocab), 64)]
    ray, ray_why = sound.ray_text_embedder(settings)  # a Ray cluster's CLAP first: servers there need no weights
    if ray is not None:
        say(0.9, f"CLAP text embeddings of {len(vocab)} tags on the Ray cluster")
        try:
            done = [ray.clap_text_blocking(b) for b in batches]
        except Exception as exc:  # noqa: BLE001 - said in the provenance; the fit goes on without prompt matching
            return f"none (the Ray cluster's CLAP failed: {type(exc).__name__}: {exc})"
        arrays["tag_vocab"] = np.asarray(vocab, dtype=str)
        arrays["tag_clap"] = np.concatenate([rows for rows, _ in done]).astype(np.float32)
        return (f"clap:{done[0][1]['model_id']} over {len(vocab)} tags "
                f"(ray: the echotune-clap Serve application on {settings.engine_url})")
    try:
        embedder = sound.get_embedder(settings)
    except sound.ClapUnavailable as exc:
        return f"none ({'; '.join(w for w in (ray_why, str(exc)) if w)})"
    say(0.9, f"CLAP text embeddings of {len(vocab)} tags")
    rows = [embedder.text(b) for b in batches]
    arrays["tag_vocab"] = np.asarray(vocab, dtype=str)
    arrays["tag_clap"] = np.concatenate(rows).astype(np.float32)
    return f"clap:{settings.clap_model} over {len(vocab)} tags" + (f" (in-process: {ray_why})" if ray_why else "")


def _measure(split: Split, fitted: dict[str, Model], weights: dict[str, float]) -> dict[str, float]:
    total = sum(np.float32(w) * zscore(fitted[k].score(split.rows)) for k, w in weights.items() if w)
    ranked = top_k(total, split.matrix[split.rows], 20)[0]
    return {k: round(v, 4) for k, v in metrics(ranked, split.hidden, (20,)).items()}


# -- storing -------------------------------------------------------------------------------------------------------
def _versions(root: Path, corpus_id: str) -> list[int]:
    folder = root / corpus_id
    if not folder.is_dir():
        return []
    return sorted(int(p.name[1:]) for p in folder.iterdir()
                  if p.name.startswith("v") and p.name[1:].isdigit() and (p / "provenance.json").is_file())


def save(root: Path, corpus_id: str, arrays: dict[str, np.ndarray], provenance: dict[str, Any],
         index: ItemIndex | None = None) -> int:
    """Store a new version (temp dir + rename, 0700/0600); returns its number. Keeps ``KEEP_VERSIONS``."""
    folder = root / corpus_id
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    for p in (root.parent, root, folder):
        if p.is_dir() and p.stat().st_mode & 0o077:
            os.chmod(p, 0o700)
    tmp = folder / f".tmp-{secrets.token_hex(8)}"
    tmp.mkdir(mode=0o700)
    try:
        fd = os.open(tmp / "arrays.npz", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        if index is not None:
            index.save(tmp / ANN_FILE)
            os.chmod(tmp / ANN_FILE, 0o600)
        while True:
            version = (max(_versions(root, corpus_id), default=0)) + 1
            provenance = dict(provenance, version=version)
            fd = os.open(tmp / "provenance.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(provenance, fh, indent=1)
            try:
                os.rename(tmp, folder / f"v{version}")  # fails if another fit took this number first
                break
            except OSError:
                if not (folder / f"v{version}").exists():
                    raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in _versions(root, corpus_id)[:-KEEP_VERSIONS]:
        shutil.rmtree(folder / f"v{old}", ignore_errors=True)
    return version


_CACHE: dict[tuple[Path, int], Fitted] = {}
_CACHE_LOCK = threading.Lock()


def load(root: Path, corpus_id: str, version: int | None = None) -> Fitted:
    """A stored version (the newest by default); KeyError when there is none."""
    versions = _versions(root, corpus_id)
    if not versions or (version is not None and version not in versions):
        raise KeyError(corpus_id)
    v = version if version is not None else versions[-1]
    path = root / corpus_id / f"v{v}"
    key = (path, (path / "provenance.json").stat().st_mtime_ns)  # a version rewritten in place is read again
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
    provenance = json.loads((path / "provenance.json").read_text(encoding="utf-8"))
    with np.load(path / "arrays.npz", allow_pickle=False) as z:
        a = {k: z[k] for k in z.files}
    ids = [str(s) for s in a["item_ids"]]
    n = len(ids)
    fitted = Fitted(corpus_id=corpus_id, version=v, provenance=provenance, item_ids=ids,
                    weights={k: float(w) for k, w in provenance["weights"].items()}, popularity=a["popularity"],
                    path=path)
    if "knn_data" in a:
        fitted.knn = sp.csr_matrix((a["knn_data"], a["knn_indices"], a["knn_indptr"]), shape=(n, n))
    if "ease_b" in a:
        fitted.ease_items, fitted.ease_b = a["ease_items"], a["ease_b"]
    if "als_items" in a:
        fitted.als_items = np.ascontiguousarray(a["als_items"], dtype=np.float32)
        if (path / ANN_FILE).is_file():
            fitted.als_index = ItemIndex.load(fitted.als_items, path / ANN_FILE)
    if "tag_clap" in a:
        fitted.tag_vocab, fitted.tag_clap = [str(t) for t in a["tag_vocab"]], a["tag_clap"]
    if "content_data" in a:
        fitted.content = sp.csr_matrix((a["content_data"], a["content_indices"], a["content_indptr"]),
                                       shape=tuple(int(s) for s in a["content_shape"]))
    with _CACHE_LOCK:
        if len(_CACHE) >= 4:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = fitted
    return fitted


def fitted_corpora(root: Path) -> list[tuple[str, int, dict[str, Any]]]:
    """(corpus id, newest version, its provenance) for every corpus with a stored model, newest fit first."""
    out = []
    if root.is_dir():
        for folder in root.iterdir():
            versions = _versions(root, folder.name)
            if versions:
                prov = json.loads((folder / f"v{versions[-1]}" / "provenance.json").read_text(encoding="utf-8"))
                out.append((folder.name, versions[-1], prov))
    out.sort(key=lambda t: -float(t[2].get("created_at", 0)))
    return out


def fit_and_save(settings, corpus_id: str, *, seed: int = 0, progress: Progress | None = None) -> dict[str, Any]:
    """Load the corpus, fit, store: the job's and the CLI's work. Returns the stored provenance."""
    corpus = load_corpus(corpora_dir(settings), corpus_id)
    arrays, provenance, index = fit_corpus(corpus, seed=seed, progress=progress, settings=settings)
    version = save(models_root(settings), corpus_id, arrays, provenance, index)
    return dict(provenance, version=version)


async def submit_fit(app, owner: str, corpus_id: str, *, force: bool = False):
    """Start the fit job (tool and CLI). A corpus unknown is the caller's error; a model already fitted on this
    corpus version is refused unless ``force`` (the answer names it)."""
    from ..errors import BadInput

    try:
        corpus = load_corpus(corpora_dir(app.settings), corpus_id)
    except KeyError:
        raise BadInput("corpus_id", f"no corpus {corpus_id!r}",
                       "an id from `echotune-mcp recommend corpus list`") from None
    if not force:
        try:
            current = load(models_root(app.settings), corpus_id)
        except KeyError:
            current = None
        if current is not None and current.provenance["corpus"]["version"] == corpus.info.version:
            raise BadInput("force", f"model v{current.version} is already fitted on corpus {corpus_id} version "
                           f"{corpus.info.version}", "force=true to fit it again")

    async def work(job) -> dict[str, Any]:
        return await job.run_in_thread(lambda: fit_and_save(app.settings, corpus_id,
                                                            progress=job.progress_threadsafe))

    return await app.jobs.submit(owner=owner, tool=TOOL, params={"corpus_id": corpus_id, "force": force}, work=work)
