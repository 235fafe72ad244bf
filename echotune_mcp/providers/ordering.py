"""Playlist orderings and de-duplication, as pure functions over normalised tracks.

Tempo, energy and key flow need analysis data: Spotify's audio-features endpoint is gone (Nov 2024)
and neither service exposes it, so the caller passes features it has (from EchoTune's analysis
tools, or its own) and tracks without them are reported instead of guessed.
"""

from __future__ import annotations

import re
from collections import OrderedDict, deque
from typing import Literal

from pydantic import BaseModel, Field

from .base import Move, Track
from .matching import same_recording

OrderKey = Literal["release_date", "artist_spread", "tempo", "energy", "key_flow"]
FEATURE_KEYS = {"tempo", "energy", "key_flow"}


class TrackFeatures(BaseModel):
    tempo_bpm: float | None = Field(None, ge=20, le=300)
    energy: float | None = Field(None, ge=0, le=1)
    key: str | None = Field(None, max_length=16, description="'8A' (Camelot), 'C major', 'A minor', 'F#m', ...")


_PITCH = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}
_KEY = re.compile(r"^\s*([a-g])\s*([#b♯♭]?)\s*(m|min|minor|maj|major)?\s*$", re.IGNORECASE)
_CAMELOT = re.compile(r"^\s*(1[0-2]|[1-9])\s*([ab])\s*$", re.IGNORECASE)


def camelot(key: str) -> tuple[int, str] | None:
    """A key as a Camelot wheel position (number 1-12, 'A' minor / 'B' major), or None if unreadable."""
    m = _CAMELOT.match(key)
    if m:
        return int(m.group(1)), m.group(2).upper()
    m = _KEY.match(key)
    if not m:
        return None
    pc = _PITCH[m.group(1).lower()] + {"#": 1, "♯": 1, "b": -1, "♭": -1}.get(m.group(2), 0)
    minor = (m.group(3) or "").lower() in {"m", "min", "minor"}
    major_pc = (pc + 3) % 12 if minor else pc % 12
    return ((7 * major_pc) % 12 + 7) % 12 + 1, "A" if minor else "B"


def camelot_distance(a: tuple[int, str], b: tuple[int, str]) -> int:
    steps = min((a[0] - b[0]) % 12, (b[0] - a[0]) % 12)
    return steps + (0 if a[1] == b[1] else 1)


def artist_spread(tracks: list[Track]) -> list[Track]:
    """Avoid the same lead artist twice in a row where possible; keeps each artist's own order."""
    groups: OrderedDict[str, deque[Track]] = OrderedDict()
    for t in tracks:
        groups.setdefault((t.artists[0] if t.artists else "").lower(), deque()).append(t)
    out: list[Track] = []
    last = None
    while groups:
        # the artist with most left goes first, unless they just played
        ranked = sorted(groups, key=lambda a: -len(groups[a]))
        pick = next((a for a in ranked if a != last), ranked[0])
        out.append(groups[pick].popleft())
        if not groups[pick]:
            del groups[pick]
        last = pick
    return out


def key_flow(tracks: list[Track], keys: dict[str, tuple[int, str]]) -> list[Track]:
    """Greedy nearest neighbour on the Camelot wheel, starting from the first track."""
    left = list(tracks)
    out = [left.pop(0)]
    while left:
        here = keys[out[-1].id]
        nxt = min(left, key=lambda t: camelot_distance(here, keys[t.id]))
        left.remove(nxt)
        out.append(nxt)
    return out


def missing_features(tracks: list[Track], by: OrderKey, features: dict[str, TrackFeatures]) -> list[str]:
    attr = {"tempo": "tempo_bpm", "energy": "energy", "key_flow": "key"}[by]
    missing = []
    for t in tracks:
        f = features.get(t.id)
        value = getattr(f, attr) if f else None
        if value is None or (by == "key_flow" and camelot(str(value)) is None):
            missing.append(t.id)
    return missing


def order_by(tracks: list[Track], by: OrderKey, *, descending: bool = False,
             features: dict[str, TrackFeatures] | None = None) -> list[Track]:
    """Tracks in the new order; feature keys require features for every track (check missing_features first)."""
    feats = features or {}
    if by == "release_date":
        dated = sorted((t for t in tracks if t.release_date), key=lambda t: t.release_date or "", reverse=descending)
        return dated + [t for t in tracks if not t.release_date]
    if by == "artist_spread":
        return artist_spread(tracks)
    if by == "tempo":
        return sorted(tracks, key=lambda t: feats[t.id].tempo_bpm or 0.0, reverse=descending)
    if by == "energy":
        return sorted(tracks, key=lambda t: feats[t.id].energy or 0.0, reverse=descending)
    keys = {t.id: camelot(str(feats[t.id].key)) for t in tracks}
    flowed = key_flow(tracks, keys)  # type: ignore[arg-type]
    return list(reversed(flowed)) if descending else flowed


def dedupe(tracks: list[Track], *, fuzzy_threshold: float | None = None) -> tuple[list[Track], list[Track]]:
    """(kept, removed): the first occurrence of each recording wins (same id or same ISRC)."""
    kept: list[Track] = []
    removed: list[Track] = []
    for t in tracks:
        threshold = fuzzy_threshold if fuzzy_threshold is not None else 2.0  # > 1 disables fuzzy
        if any(same_recording(t, k, threshold) for k in kept):
            removed.append(t)
        else:
            kept.append(t)
    return kept, removed


# -- applying an order by moves -----------------------------------------------------------------
def movable(t: Track) -> bool:
    """Whether the tools may place this item by its track id (episodes, local files, greyed-out items: no)."""
    return t.kind == "track" and bool(t.id)


def arrange(items: list[Track], new_order: list[int]) -> list[int]:
    """The full target order (indices into ``items``): items that are not ``movable`` keep their positions,
    and the movable ones fill the remaining positions in ``new_order`` (a permutation of their indices)."""
    slots = iter(new_order)
    return [i if not movable(t) else next(slots) for i, t in enumerate(items)]


def _longest_increasing(seq: list[int]) -> set[int]:
    """Indices (into ``seq``) of one longest strictly increasing subsequence, O(n log n)."""
    tails: list[int] = []  # tails[k]: index in seq of the smallest tail of an increasing run of length k+1
    prev = [-1] * len(seq)
    for i, v in enumerate(seq):
        k = _bisect_tails(seq, tails, v)
        if k > 0:
            prev[i] = tails[k - 1]
        if k == len(tails):
            tails.append(i)
        else:
            tails[k] = i
    out: set[int] = set()
    i = tails[-1] if tails else -1
    while i != -1:
        out.add(i)
        i = prev[i]
    return out


def _bisect_tails(seq: list[int], tails: list[int], v: int) -> int:
    lo, hi = 0, len(tails)
    while lo < hi:
        mid = (lo + hi) // 2
        if seq[tails[mid]] < v:
            lo = mid + 1
        else:
            hi = mid
    return lo


def plan_moves(items: list[Track], target: list[int]) -> list[Move]:
    """Single-item moves that turn ``items`` into ``[items[i] for i in target]``, fewest possible.

    Items on one longest increasing run of target positions stay put; each other item, taken in target
    order, goes right after its target predecessor. Each ``Move`` is stated against the list as it is
    when that move is made (``index``/``before`` positions and the neighbouring entries)."""
    if sorted(target) != list(range(len(items))):
        raise ValueError("target must be a permutation of the item indices")
    where = {orig: pos for pos, orig in enumerate(target)}  # original index -> target position
    stay = {i for i in _longest_increasing([where[i] for i in range(len(items))])}
    current = list(range(len(items)))  # original indices in their present order
    moves: list[Move] = []
    for pos, orig in enumerate(target):
        if orig in stay:
            continue
        at = current.index(orig)
        current.pop(at)
        dest = 0 if pos == 0 else current.index(target[pos - 1]) + 1  # right after the target predecessor
        before = dest + (1 if dest >= at else 0)  # stated against the list before the item was lifted
        if before in (at, at + 1):  # already there
            current.insert(at, orig)
            stay.add(orig)
            continue
        successor = items[current[dest]] if dest < len(current) else None
        moves.append(Move(index=at, before=before if dest < len(current) else None, item=items[orig],
                          successor=successor))
        current.insert(dest, orig)
        stay.add(orig)
    return moves


def apply_moves(items: list, moves: list[Move]) -> list:
    """The list after ``moves`` (how the services apply them); used to check a plan."""
    out = list(items)
    for m in moves:
        item = out.pop(m.index)
        dest = len(out) if m.before is None else (m.before if m.before < m.index else m.before - 1)
        out.insert(dest, item)
    return out
