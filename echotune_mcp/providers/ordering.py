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

from .base import Track
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
