"""Operator-loaded corpora: public listening data the recommender and the segment tools draw on.

A corpus is shared read-only by every principal (it is public data, not anyone's history), so it lives beside
the data, under ``<data dir>/corpora/<corpus id>/``, not in an owner-scoped store. Each one records the licence
the operator loaded it under (required: Last.fm-2k and the TidyTuesday playlists are for non-commercial
research) and every tool that reports a corpus reports that licence with it.

Two formats:

``interactions``
    A TSV with the header ``user<TAB>item<TAB>weight`` (an optional 4th ``timestamp`` column is ignored), or the
    HetRec Last.fm-2k ``user_artists.dat`` (``userID<TAB>artistID<TAB>weight``). With ``items_file`` (Last.fm's
    ``artists.dat``: ``id<TAB>name...``) the item ids become ``artist:<folded name>`` (artists that fold to one
    name are merged); ``tag_files`` (``user_taggedartists.dat``: ``userID<TAB>artistID<TAB>tagID...``) with
    ``tag_names`` (``tags.dat``) give each artist its most-assigned tags.
``playlists``
    TidyTuesday-style CSVs (several part files at once): a playlist (``playlist_id``) is a "user", a track the
    item ``spotify:track:<track_id>`` carrying its title, artist, popularity, the playlist genres/subgenres it
    was filed under as tags, and its audio features.

Files are read a line at a time and the matrix is built from compact arrays, so memory follows the size of the
corpus, not of Python objects per row. A malformed row is counted (with a few examples) and reported, never
half-used; a file whose header is not one of the above is refused naming the header expected. Adding the same
files again (same SHA-256s, same format) reports the corpus already there instead of a copy. A corpus is written
to a temporary folder and renamed into place, so a crash leaves either the whole corpus or none of it.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import json
import logging
import math
import os
import re
import secrets
import shutil
import threading
import time
from array import array
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pydantic
import scipy.sparse as sp

from ..private_files import DIR_MODE, FILE_MODE, private_dir
from .history import fold

log = logging.getLogger(__name__)

CORPUS_FORMATS = ("interactions", "playlists")
FEATURE_KEYS = ("danceability", "energy", "key", "loudness", "mode", "speechiness", "acousticness",
                "instrumentalness", "liveness", "valence", "tempo", "duration_ms")
MAX_TAGS_PER_ITEM = 15
MAX_EXAMPLES = 5
LICENCE_MAX = 500
_ID_RE = re.compile(r"^corpus_[0-9a-f]{20}$")
_SPOTIFY_ID = re.compile(r"^[0-9A-Za-z]{22}$")
_NAME_RE = re.compile(r"^[\w .,:()+-]{1,80}$")


class CorpusError(ValueError):
    """A corpus cannot be added (bad input file, missing licence, ...); the message says what is expected."""


@dataclass(frozen=True)
class CorpusItem:
    id: str  # "spotify:track:<id>" where known, else "artist:<folded name>" (or the file's own item id)
    kind: Literal["track", "artist"]
    title: str | None  # track title; None for an artist item
    artists: tuple[str, ...]
    spotify_id: str | None = None
    isrc: str | None = None
    tags: tuple[str, ...] = ()  # genres / tags, lower-case, most frequent first
    features: dict[str, float] = field(default_factory=dict)  # Spotify-style audio features where known
    popularity: float | None = None  # 0..100 where the data has it

    def to_json(self) -> dict:
        d = {"id": self.id, "kind": self.kind, "title": self.title, "artists": list(self.artists)}
        if self.spotify_id:
            d["spotify_id"] = self.spotify_id
        if self.isrc:
            d["isrc"] = self.isrc
        if self.tags:
            d["tags"] = list(self.tags)
        if self.features:
            d["features"] = self.features
        if self.popularity is not None:
            d["popularity"] = self.popularity
        return d

    @classmethod
    def from_json(cls, d: dict) -> CorpusItem:
        return cls(id=d["id"], kind=d["kind"], title=d.get("title"), artists=tuple(d.get("artists", ())),
                   spotify_id=d.get("spotify_id"), isrc=d.get("isrc"), tags=tuple(d.get("tags", ())),
                   features=dict(d.get("features", {})), popularity=d.get("popularity"))


class CorpusInfo(pydantic.BaseModel):
    id: str
    name: str
    format: str
    licence: str
    commercial_use: bool
    source_files: list[dict]  # {name, sha256, bytes, role}
    users: int
    items: int
    interactions: int
    added_at: float
    version: int
    malformed_rows: int = 0
    malformed_examples: list[str] = []
    tagged_items: int = 0
    already_present: bool = pydantic.Field(default=False, exclude=True)  # set on add_corpus's answer only

    def fingerprint(self) -> tuple:
        return (self.format, tuple(sorted((f["role"], f["sha256"]) for f in self.source_files)))


@dataclass
class Corpus:
    info: CorpusInfo
    items: list[CorpusItem]
    users: list[str]
    matrix: sp.csr_matrix  # users x items, float32 weights (plays / playlist membership)
    _index: dict[str, int] | None = field(default=None, repr=False)

    def item_index(self) -> dict[str, int]:
        if self._index is None:
            self._index = {it.id: i for i, it in enumerate(self.items)}
        return self._index


def corpora_dir(settings) -> Path:
    return Path(settings.data_dir) / "corpora"


# -- reading ---------------------------------------------------------------------------------------------------
class _Malformed:
    def __init__(self) -> None:
        self.count = 0
        self.examples: list[str] = []

    def add(self, where: str, problem: str) -> None:
        self.count += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"{where}: {problem}")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) without the line end; UTF-8, a line that is not UTF-8 read as Latin-1 (tags.dat)."""
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("latin-1")
            yield lineno, text.rstrip("\r\n")


def _sha256(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return h.hexdigest(), size


class _Builder:
    """Interactions accumulated as compact int/float arrays, ids interned once."""

    def __init__(self) -> None:
        self.users: dict[str, int] = {}
        self.items: dict[str, int] = {}
        self.rows = array("i")
        self.cols = array("i")
        self.weights = array("f")

    def add(self, user: str, item: str, weight: float) -> None:
        self.rows.append(self.users.setdefault(user, len(self.users)))
        self.cols.append(self.items.setdefault(item, len(self.items)))
        self.weights.append(weight)

    def matrix(self, binary: bool = False) -> sp.csr_matrix:
        m = sp.csr_matrix((np.frombuffer(self.weights, dtype=np.float32),
                           (np.frombuffer(self.rows, dtype=np.int32), np.frombuffer(self.cols, dtype=np.int32))),
                          shape=(len(self.users), len(self.items)), dtype=np.float32)
        m.sum_duplicates()
        if binary:
            m.data[:] = 1.0
        m.sort_indices()
        return m


def _read_interactions(path: Path, builder: _Builder, bad: _Malformed) -> None:
    lines = _lines(path)
    first = next(lines, None)
    header = tuple(h.strip().lower() for h in (first[1].split("\t") if first else []))
    if header[:3] not in (("user", "item", "weight"), ("userid", "artistid", "weight")) or len(header) > 4:
        raise CorpusError(f"{path}: format 'interactions' expects a first line 'user<TAB>item<TAB>weight' (or "
                          f"Last.fm-2k's 'userID<TAB>artistID<TAB>weight'), got {'<TAB>'.join(header)[:80]!r}")
    width = len(header)
    for lineno, line in lines:
        if not line.strip():
            continue
        parts = line.split("\t")
        where = f"{path.name}:{lineno}"
        if len(parts) != width:
            bad.add(where, f"expected {width} tab-separated columns, got {len(parts)}")
            continue
        user, item = parts[0].strip(), parts[1].strip()
        if not user or not item:
            bad.add(where, "empty user or item id")
            continue
        try:
            weight = float(parts[2])
        except ValueError:
            weight = math.nan
        if not math.isfinite(weight) or weight <= 0:
            bad.add(where, f"weight {parts[2][:20]!r} is not a finite number > 0")
            continue
        builder.add(user, item, weight)


def _read_table(path: Path, required: tuple[str, ...], what: str, bad: _Malformed) -> Iterator[list[str]]:
    lines = _lines(path)
    first = next(lines, None)
    header = [h.strip().lower() for h in (first[1].split("\t") if first else [])]
    if tuple(header[:len(required)]) != required:
        raise CorpusError(f"{path}: {what} must start with the header {'<TAB>'.join(required)!r}, "
                          f"got {'<TAB>'.join(header)[:80]!r}")
    for lineno, line in lines:
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split("\t")]
        if len(parts) < len(required) or not all(parts[:len(required)]):
            bad.add(f"{path.name}:{lineno}", f"expected {len(required)}+ non-empty tab-separated columns")
            continue
        yield parts


def _artist_names(items_file: Path, bad: _Malformed) -> dict[str, str]:
    return {parts[0]: parts[1] for parts in _read_table(items_file, ("id", "name"), "the items file (artists.dat)", bad)}


def _artist_tags(tag_files: list[Path], tag_names: Path | None, bad: _Malformed) -> dict[str, Counter]:
    names = ({p[0]: fold(p[1]) for p in _read_table(tag_names, ("tagid", "tagvalue"), "the tag names file", bad)}
             if tag_names else {})
    tags: dict[str, Counter] = defaultdict(Counter)
    for path in tag_files:
        for parts in _read_table(path, ("userid", "artistid", "tagid"), "a tag assignments file", bad):
            tag = names.get(parts[2]) if names else fold(parts[2])
            if tag:
                tags[parts[1]][tag] += 1
    return tags


def _parse_interactions(files: list[Path], items_file: Path | None, tag_files: list[Path],
                        tag_names: Path | None, item_kind: str, bad: _Malformed):
    raw = _Builder()
    for path in files:
        _read_interactions(path, raw, bad)
    if not raw.rows:
        raise CorpusError(f"no usable interaction rows in {', '.join(p.name for p in files)} "
                          f"({bad.count} malformed: {'; '.join(bad.examples)})")
    names = _artist_names(items_file, bad) if items_file else {}
    tags = _artist_tags(tag_files, tag_names, bad) if tag_files else {}
    # Map the file's item ids to corpus item ids (artist:<folded name> when the name is known).
    raw_ids = list(raw.items)
    mapped: dict[str, int] = {}
    col_map = np.empty(len(raw_ids), dtype=np.int32)
    display: list[str] = []
    members: list[list[str]] = []
    for j, rid in enumerate(raw_ids):
        name = names.get(rid)
        cid = f"artist:{fold(name)}" if name and fold(name) else rid
        k = mapped.get(cid)
        if k is None:
            k = mapped[cid] = len(mapped)
            display.append(name or rid)
            members.append([])
        members[k].append(rid)
        col_map[j] = k
    rows = np.frombuffer(raw.rows, dtype=np.int32)
    cols = col_map[np.frombuffer(raw.cols, dtype=np.int32)]
    m = sp.csr_matrix((np.frombuffer(raw.weights, dtype=np.float32), (rows, cols)),
                      shape=(len(raw.users), len(mapped)), dtype=np.float32)
    m.sum_duplicates()
    m.sort_indices()
    items = []
    for cid, k in mapped.items():
        counts: Counter = Counter()
        for rid in members[k]:
            counts.update(tags.get(rid, {}))
        top = tuple(t for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_TAGS_PER_ITEM])
        if cid.startswith("spotify:track:"):
            sid = cid.removeprefix("spotify:track:")
            items.append(CorpusItem(cid, "track", None, (), spotify_id=sid, tags=top))
        elif names.get(members[k][0]) or item_kind == "artist" or cid.startswith(("artist:", "spotify:artist:")):
            items.append(CorpusItem(cid, "artist", None, (display[k],), tags=top))
        else:  # a track known only by the file's id: no title to show
            items.append(CorpusItem(cid, "track", None, (), tags=top))
    return list(raw.users), items, m


PLAYLIST_COLUMNS = ("track_id", "playlist_id")


def _parse_playlists(files: list[Path], bad: _Malformed):
    builder = _Builder()
    meta: dict[str, dict] = {}
    genres: dict[str, Counter] = defaultdict(Counter)
    for path in files:
        try:
            fh = path.open(encoding="utf-8", errors="replace", newline="")
        except OSError as exc:
            raise CorpusError(f"{path}: cannot read ({exc.strerror or exc})") from None
        with fh:
            reader = csv.DictReader(fh)
            missing = [c for c in PLAYLIST_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise CorpusError(f"{path}: format 'playlists' expects a CSV with TidyTuesday columns (at least "
                                  f"{', '.join(PLAYLIST_COLUMNS)}; also track_name, track_artist, "
                                  f"track_popularity, playlist_genre, playlist_subgenre and the audio features); "
                                  f"missing {', '.join(missing)}")
            for row in reader:
                where = f"{path.name}:{reader.line_num}"
                if None in row:
                    bad.add(where, "more fields than the header")
                    continue
                track, playlist = (row.get("track_id") or "").strip(), (row.get("playlist_id") or "").strip()
                if not _SPOTIFY_ID.match(track):
                    bad.add(where, f"track_id {track[:30]!r} is not a 22-character Spotify id")
                    continue
                if not playlist:
                    bad.add(where, "empty playlist_id")
                    continue
                item = f"spotify:track:{track}"
                builder.add(playlist, item, 1.0)
                for col in ("playlist_genre", "playlist_subgenre"):
                    tag = fold(row.get(col) or "")
                    if tag and tag != "na":
                        genres[item][tag] += 1
                if item not in meta:
                    meta[item] = _track_meta(track, row)
    if not builder.rows:
        raise CorpusError(f"no usable playlist rows in {', '.join(p.name for p in files)} "
                          f"({bad.count} malformed: {'; '.join(bad.examples)})")
    m = builder.matrix(binary=True)  # a track listed twice in a playlist is one membership
    items = []
    for item in builder.items:
        d = meta[item]
        tags = tuple(t for t, _ in sorted(genres[item].items(), key=lambda kv: (-kv[1], kv[0])))[:MAX_TAGS_PER_ITEM]
        items.append(CorpusItem(item, "track", d["title"], d["artists"], spotify_id=d["spotify_id"], tags=tags,
                                features=d["features"], popularity=d["popularity"]))
    return list(builder.users), items, m


def _number(raw: str | None) -> float | None:
    try:
        value = float(raw) if raw not in (None, "", "NA") else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def _track_meta(track: str, row: dict) -> dict:
    title = (row.get("track_name") or "").strip()
    artist = (row.get("track_artist") or "").strip()
    features = {k: v for k in FEATURE_KEYS if (v := _number(row.get(k))) is not None}
    pop = _number(row.get("track_popularity"))
    return {"title": title if title and title != "NA" else None,
            "artists": (artist,) if artist and artist != "NA" else (),
            "spotify_id": track, "features": features,
            "popularity": pop if pop is not None and 0 <= pop <= 100 else None}


# -- storage ---------------------------------------------------------------------------------------------------
def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """One writer at a time across processes sharing the data directory (add / remove)."""
    private_dir(root, ours=True)
    fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _info_path(root: Path, corpus_id: str) -> Path:
    return root / corpus_id / "info.json"


def list_corpora(root: Path) -> list[CorpusInfo]:
    """Every complete corpus under ``root`` (temporary and removed ones are invisible), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    out = []
    for entry in root.iterdir():
        if not _ID_RE.match(entry.name):
            continue
        try:
            out.append(CorpusInfo.model_validate_json((entry / "info.json").read_bytes()))
        except (OSError, ValueError) as exc:
            log.warning("corpus %s is unreadable and is skipped: %s", entry.name, exc)
    return sorted(out, key=lambda c: (c.added_at, c.id))


def add_corpus(root: Path, files: list[Path], format: str, licence: str, *, name: str | None = None,
               items_file: Path | None = None, commercial_use: bool = False, tag_files: list[Path] | None = None,
               tag_names: Path | None = None, item_kind: Literal["artist", "track"] = "artist",
               replace: str | None = None) -> CorpusInfo:
    """Parse ``files`` as ``format`` and store them as a new corpus (see the module docstring).

    The same files in the same format added before: that corpus is returned with ``already_present`` set.
    ``replace``: the id of a corpus these files supersede (a newer export of the same data): it keeps its id and
    ``added_at`` and its ``version`` goes up by one, so models fitted on the old version can tell they are stale.
    """
    root = Path(root)
    if format not in CORPUS_FORMATS:
        raise CorpusError(f"format {format!r} is not known (allowed: {', '.join(CORPUS_FORMATS)})")
    licence = (licence or "").strip()
    if not licence:
        raise CorpusError("a corpus needs its licence (--licence), e.g. 'CC BY-NC 4.0, non-commercial research': "
                          "it is recorded and reported with every result drawn from the corpus")
    if len(licence) > LICENCE_MAX:
        raise CorpusError(f"the licence text is {len(licence)} characters (allowed: up to {LICENCE_MAX})")
    if not files:
        raise CorpusError("no corpus files given")
    tag_files = list(tag_files or [])
    if format == "playlists" and (items_file or tag_files or tag_names):
        raise CorpusError("--items / --tags / --tag-names apply to format 'interactions' only (a playlists CSV "
                          "carries its own track names and genres)")
    if tag_files and not items_file:
        raise CorpusError("--tags needs --items (the artists file): tags are attached to named artists")
    if name is not None and not _NAME_RE.match(name):
        raise CorpusError(f"name {name[:40]!r} is not allowed (1-80 letters, digits, spaces and .,:()+-)")
    roles = [("data", Path(p)) for p in files]
    roles += [("items", Path(items_file))] if items_file else []
    roles += [("tags", Path(p)) for p in tag_files] + ([("tag_names", Path(tag_names))] if tag_names else [])
    sources = []
    for role, path in roles:
        if not path.is_file():
            raise CorpusError(f"{path}: not a file")
        digest, size = _sha256(path)
        sources.append({"name": path.name, "sha256": digest, "bytes": size, "role": role})
    fingerprint = (format, tuple(sorted((s["role"], s["sha256"]) for s in sources)))
    for existing in list_corpora(root):
        if existing.fingerprint() == fingerprint:
            return existing.model_copy(update={"already_present": True})
    if replace is not None and not _info_path(root, replace).is_file():
        raise CorpusError(f"no corpus {replace!r} to replace (see `corpus list`)")

    bad = _Malformed()
    data = [Path(p) for p in files]
    if format == "interactions":
        users, items, matrix = _parse_interactions(data, Path(items_file) if items_file else None,
                                                   [Path(p) for p in tag_files],
                                                   Path(tag_names) if tag_names else None, item_kind, bad)
    else:
        users, items, matrix = _parse_playlists(data, bad)
    info = CorpusInfo(
        id="corpus_" + secrets.token_hex(10), name=name or Path(files[0]).stem, format=format, licence=licence,
        commercial_use=commercial_use, source_files=sources, users=len(users), items=len(items),
        interactions=int(matrix.nnz), added_at=time.time(), version=1, malformed_rows=bad.count,
        malformed_examples=bad.examples, tagged_items=sum(1 for it in items if it.tags))
    with _locked(root):
        current = list_corpora(root)
        for existing in current:  # another process may have added the same files meanwhile
            if existing.fingerprint() == fingerprint:
                return existing.model_copy(update={"already_present": True})
        if replace is not None:
            old = next((c for c in current if c.id == replace), None)
            if old is None:
                raise CorpusError(f"no corpus {replace!r} to replace (see `corpus list`)")
            info = info.model_copy(update={"id": old.id, "version": old.version + 1, "added_at": old.added_at,
                                           "name": name or old.name})
        tmp = root / f".tmp-{secrets.token_hex(8)}"
        tmp.mkdir(mode=DIR_MODE)
        os.chmod(tmp, DIR_MODE)
        try:
            _write_private(tmp / "users.json", json.dumps(users).encode())
            _write_private(tmp / "items.jsonl",
                           "".join(json.dumps(it.to_json(), ensure_ascii=False) + "\n" for it in items).encode())
            buf = _npz_bytes(matrix)
            _write_private(tmp / "matrix.npz", buf)
            _write_private(tmp / "info.json", info.model_dump_json().encode())  # last: marks it complete
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _move_into_place(root, tmp, info.id)
    return info


def _move_into_place(root: Path, tmp: Path, corpus_id: str) -> None:
    """Rename the finished folder to its id; a replaced version is renamed aside first and removed after (put
    back if the swap fails), so a reader sees the old corpus or the new one, never a mix."""
    target = root / corpus_id
    aside = root / f".trash-{secrets.token_hex(8)}" if target.exists() else None
    try:
        if aside is not None:
            os.rename(target, aside)
        try:
            os.rename(tmp, target)
        except BaseException:
            if aside is not None:
                os.rename(aside, target)
                aside = None
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
        _forget(corpus_id)


def _npz_bytes(matrix: sp.csr_matrix) -> bytes:
    import io

    buf = io.BytesIO()
    sp.save_npz(buf, matrix.tocsr(), compressed=False)
    return buf.getvalue()


def remove_corpus(root: Path, corpus_id: str) -> bool:
    """Remove a corpus; False when there is none by that id. Renamed away first, so readers never see half."""
    root = Path(root)
    if not _ID_RE.match(corpus_id or ""):
        return False
    with _locked(root):
        target = root / corpus_id
        if not target.is_dir():
            return False
        trash = root / f".trash-{secrets.token_hex(8)}"
        os.rename(target, trash)
    shutil.rmtree(trash, ignore_errors=True)
    _forget(corpus_id)
    return True


def _forget(corpus_id: str) -> None:
    with _cache_lock:
        for key in [k for k in _cache if k[1] == corpus_id]:
            del _cache[key]


_cache: dict[tuple[str, str, int], Corpus] = {}
_cache_lock = threading.Lock()
_CACHE_MAX = 4


def load_corpus(root: Path, corpus_id: str) -> Corpus:
    """The corpus ``corpus_id`` (cached per id and version); KeyError when there is none."""
    root = Path(root)
    if not _ID_RE.match(corpus_id or ""):
        raise KeyError(corpus_id)
    try:
        info = CorpusInfo.model_validate_json(_info_path(root, corpus_id).read_bytes())
    except FileNotFoundError:
        raise KeyError(corpus_id) from None
    key = (str(root.resolve()), corpus_id, info.version)
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None:
        return hit
    folder = root / corpus_id
    try:
        users = json.loads((folder / "users.json").read_bytes())
        with (folder / "items.jsonl").open(encoding="utf-8") as fh:
            items = [CorpusItem.from_json(json.loads(line)) for line in fh if line.strip()]
        matrix = sp.load_npz(folder / "matrix.npz").tocsr().astype(np.float32)
    except FileNotFoundError:  # removed or replaced while we read it
        raise KeyError(corpus_id) from None
    corpus = Corpus(info, items, users, matrix)
    with _cache_lock:
        while len(_cache) >= _CACHE_MAX:
            del _cache[next(iter(_cache))]
        _cache[key] = corpus
    return corpus
