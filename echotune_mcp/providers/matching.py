"""Is this the same recording on another service? ISRC first, then title/artist/duration similarity.

An ISRC identifies a recording, so equal ISRCs are a certain match. Without one we compare
normalised titles (dropping "feat.", "remastered", bracketed versions), artist names and
durations, and report the confidence so an agent can decide what to trust.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from difflib import SequenceMatcher

from .base import Track

MIN_CONFIDENCE = 0.75
_NOISE = re.compile(
    r"\s*[\(\[][^\)\]]*(feat\.?|ft\.?|with |remaster|version|edit|mono|stereo|live|explicit|clean)[^\)\]]*[\)\]]",
    re.IGNORECASE)
_DASH_SUFFIX = re.compile(r"\s+-\s+.*(remaster|version|edit|mix|live|mono|stereo).*$", re.IGNORECASE)
_FEAT = re.compile(r"\s+(feat\.?|ft\.?|featuring)\s+.*$", re.IGNORECASE)


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    text = _NOISE.sub("", text)
    text = _DASH_SUFFIX.sub("", text)
    text = _FEAT.sub("", text)
    text = text.replace("&", " and ")
    text = re.sub(r"[^\w\s]", " ", text)
    return " ".join(text.split())


def _similar(a: str, b: str) -> float:
    if not a or not b:
        return 0.0
    if a == b:
        return 1.0
    return SequenceMatcher(None, a, b).ratio()


def artist_score(a: list[str], b: list[str]) -> float:
    """Best pairing of any artist on one side with any on the other (featured artists vary by service)."""
    if not a or not b:
        return 0.5  # unknown: neither evidence for nor against
    na, nb = [normalise(x) for x in a], [normalise(x) for x in b]
    joined = _similar(" ".join(sorted(na)), " ".join(sorted(nb)))
    return max(joined, max(_similar(x, y) for x in na for y in nb))


def duration_score(a: int | None, b: int | None) -> float:
    if not a or not b:
        return 0.5
    diff = abs(a - b) / 1000
    if diff <= 2:
        return 1.0
    return max(0.0, 1.0 - (diff - 2) / 28)  # nothing left at 30 s apart


@dataclass(frozen=True)
class Match:
    track: Track
    confidence: float
    method: str  # "isrc" or "fuzzy"


def score(source: Track, candidate: Track) -> Match:
    if source.isrc and candidate.isrc and source.isrc.upper() == candidate.isrc.upper():
        return Match(candidate, 1.0, "isrc")
    title = _similar(normalise(source.title), normalise(candidate.title))
    conf = 0.5 * title + 0.35 * artist_score(source.artists, candidate.artists) \
        + 0.15 * duration_score(source.duration_ms, candidate.duration_ms)
    return Match(candidate, min(round(conf, 3), 0.99), "fuzzy")  # only an ISRC makes a match certain


def best_match(source: Track, candidates: list[Track]) -> Match | None:
    scored = [score(source, c) for c in candidates if c.id]
    return max(scored, key=lambda m: m.confidence, default=None)


def same_recording(a: Track, b: Track, threshold: float = 0.9) -> bool:
    """For dedupe: the same id, the same ISRC, or (when asked for) a near-certain fuzzy match."""
    if a.id == b.id:
        return True
    if a.isrc and b.isrc:
        return a.isrc.upper() == b.isrc.upper()
    return threshold <= 1.0 and score(a, b).confidence >= threshold
