"""Sequencing a playlist: which of the recommended tracks to play, and in what order.

``sequence`` chooses from a ranked candidate pool (``RecommendedItem``s, best first) a target number of
tracks or a target duration and orders them so that

* the energy follows an arc (flat, rise, fall, peak, valley) over the playlist's length,
* neighbouring tracks are close in tempo (half and double time count as close) and in key (harmonic
  moves on the Camelot wheel: same key, one step round, or to the relative major/minor),
* no artist plays twice within ``artist_gap`` positions and none more than ``max_per_artist`` times,
* no recording appears twice (same item id, Spotify id, ISRC or artist + title),
* better-ranked recommendations are preferred when the sound fits equally well.

It is a beam search (``BEAM`` partial playlists kept per position) over one documented cost, the sum over
positions i of::

    W_ENERGY * min(1, |energy - target(i)| / range)  (target from the arc, between the pool's 10th and 90th
                                                     energy percentiles; range = their distance, at least 0.1)
  + W_TEMPO  * tempo_step(previous, this)           (0 within TEMPO_OK of the previous tempo or its half/double,
                                                     rising to 1 at TEMPO_FAR beyond it)
  + W_KEY    * key_step(previous, this)             (0 same Camelot key, 0.15 one harmonic move, 0.5 two, else 1)
  + W_RANK   * rank / pool size                     (0 for the recommender's first choice)

A track whose features are unknown costs ``UNKNOWN`` for that term (about a typical fit), so it is placed by
the other rules (rank, artist spread, duration) rather than guessed, and the report says so. The search runs
twice: once to choose (rank counts), then over the chosen tracks with the rank term off to order them (every
order of one set has the same rank cost, and the first pass would otherwise spend the best-ranked tracks early). Everything is
deterministic for a given ``seed`` (the seed only breaks exact ties).
"""

from __future__ import annotations

import math
import random
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Literal

from ..providers.ordering import camelot_distance
from .service import RecommendedItem

Arc = Literal["flat", "rise", "fall", "peak", "valley"]
ARCS: tuple[str, ...] = ("flat", "rise", "fall", "peak", "valley")

BEAM = 8
W_ENERGY, W_TEMPO, W_KEY, W_RANK = 1.0, 0.5, 0.4, 0.6
UNKNOWN = 0.3
TEMPO_OK = 0.06     # a 6% tempo change (after half/double time) is free
TEMPO_FAR = 0.25    # 25% beyond that costs the full step
DEFAULT_DURATION_S = 210.0  # assumed for a track whose duration is unknown (said in the notes)
DEFAULT_ARTIST_GAP = 3


@dataclass
class Plan:
    """What ``plan`` decided: the order, a why-line per track, and notes on what was relaxed or unknown."""

    items: list[RecommendedItem]
    why: list[str]
    notes: list[str] = field(default_factory=list)
    total_s: float = 0.0
    target_energy: list[float | None] = field(default_factory=list)
    cost: float = 0.0


# -- features --------------------------------------------------------------------------------------
def energy_of(item: RecommendedItem) -> float | None:
    v = item.features.get("energy")
    return float(v) if v is not None and math.isfinite(v) and 0.0 <= v <= 1.0 else None


def tempo_of(item: RecommendedItem) -> float | None:
    v = item.features.get("tempo")
    return float(v) if v is not None and math.isfinite(v) and 20.0 <= v <= 300.0 else None


def key_of(item: RecommendedItem) -> tuple[int, str] | None:
    """The Camelot position from Spotify-style ``key`` (pitch class 0-11, -1 unknown) and ``mode`` (1 major)."""
    key, mode = item.features.get("key"), item.features.get("mode")
    if key is None or mode is None or not math.isfinite(key) or not 0 <= key <= 11 or mode not in (0, 1):
        return None
    minor = mode == 0
    major_pc = (int(key) + 3) % 12 if minor else int(key)
    return ((7 * major_pc) % 12 + 7) % 12 + 1, "A" if minor else "B"


def camelot_name(k: tuple[int, str] | None) -> str | None:
    return f"{k[0]}{k[1]}" if k else None


def duration_of(item: RecommendedItem) -> float | None:
    ms = item.features.get("duration_ms")
    if (ms is None or not math.isfinite(ms) or ms <= 0) and item.provider_track is not None:
        ms = item.provider_track.duration_ms
    return float(ms) / 1000.0 if ms and ms > 0 else None


def tempo_step(a: float, b: float) -> float:
    """0..1: how far tempo b is from a, taking half and double time as the same pulse."""
    d = min(abs(math.log(b * m / a)) for m in (1.0, 2.0, 0.5))
    return min(1.0, max(0.0, d - math.log1p(TEMPO_OK)) / math.log1p(TEMPO_FAR))


def key_step(a: tuple[int, str], b: tuple[int, str]) -> float:
    return {0: 0.0, 1: 0.15, 2: 0.5}.get(camelot_distance(a, b), 1.0)


def transition_cost(a: RecommendedItem, b: RecommendedItem) -> float:
    """Tempo + key roughness of going from a to b (unknown features count ``UNKNOWN``); used by the tests too."""
    ta, tb, ka, kb = tempo_of(a), tempo_of(b), key_of(a), key_of(b)
    t = tempo_step(ta, tb) if ta and tb else UNKNOWN
    k = key_step(ka, kb) if ka and kb else UNKNOWN
    return W_TEMPO * t + W_KEY * k


# -- identity --------------------------------------------------------------------------------------
def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    text = re.sub(r"\s*[\(\[].*?[\)\]]", "", text)          # (Remastered 2011), [Live]
    text = re.sub(r"\s+-\s+.*$", "", text)                   # " - Radio Edit"
    return re.sub(r"[^a-z0-9]+", " ", text).strip()


def artists_of(item: RecommendedItem) -> set[str]:
    names = item.artists or (item.provider_track.artists if item.provider_track else [])
    return {f for f in (_fold(a) for a in names) if f}


def _identities(item: RecommendedItem) -> set[str]:
    ids = {f"item:{item.item_id}"}
    track = item.provider_track
    if item.spotify_id:
        ids.add(f"sp:{item.spotify_id}")
    if item.isrc:
        ids.add(f"isrc:{item.isrc.upper()}")
    if track is not None:
        ids.add(f"{track.provider}:{track.id}")
        if track.isrc:
            ids.add(f"isrc:{track.isrc.upper()}")
    title = item.title or (track.title if track else None)
    lead = sorted(artists_of(item))[:1]
    if title and lead:
        ids.add(f"name:{lead[0]}|{_fold(title)}")
    return ids


def unique_recordings(items: list[RecommendedItem]) -> tuple[list[RecommendedItem], int]:
    """The first of each recording (by any shared identity), and how many repeats were dropped."""
    seen: set[str] = set()
    out: list[RecommendedItem] = []
    for it in items:
        ids = _identities(it)
        if ids & seen:
            continue
        seen |= ids
        out.append(it)
    return out, len(items) - len(out)


# -- the arc ---------------------------------------------------------------------------------------
def arc_shape(arc: str, x: float) -> float:
    """0..1 at playlist position x in [0, 1]."""
    x = min(1.0, max(0.0, x))
    if arc == "flat":
        return 0.5
    if arc == "rise":
        return x
    if arc == "fall":
        return 1.0 - x
    if arc == "peak":
        return math.sin(math.pi * x)
    if arc == "valley":
        return 1.0 - math.sin(math.pi * x)
    raise ValueError(f"arc must be one of {', '.join(ARCS)}")


def _energy_range(pool: list[RecommendedItem]) -> tuple[float, float]:
    """The 10th..90th percentile of the pool's known energies: an arc the pool can actually follow."""
    known = sorted(e for e in (energy_of(i) for i in pool) if e is not None)
    if not known:
        return 0.3, 0.8
    lo = known[int(0.1 * (len(known) - 1))]
    hi = known[int(round(0.9 * (len(known) - 1)))]
    if hi - lo < 0.1:
        mid = (hi + lo) / 2
        lo, hi = max(0.0, mid - 0.05), min(1.0, mid + 0.05)
    return lo, hi


# -- the search ------------------------------------------------------------------------------------
@dataclass
class _State:
    order: list[int]
    cost: float
    total_s: float
    per_artist: dict[str, int]
    gap_relaxed: int = 0

    def extend(self, j: int, step: float, dur: float, artists: set[str], relaxed: bool) -> _State:
        counts = dict(self.per_artist)
        for a in artists:
            counts[a] = counts.get(a, 0) + 1
        return _State(self.order + [j], self.cost + step, self.total_s + dur, counts,
                      self.gap_relaxed + int(relaxed))


def plan(items: list[RecommendedItem], *, length: int | None, duration_s: float | None, arc: str = "flat",
         max_per_artist: int = 3, seed: int = 0, artist_gap: int = DEFAULT_ARTIST_GAP) -> Plan:
    """Choose and order tracks from ``items`` (ranked best first); see the module docstring for the cost.

    Exactly one of ``length`` (tracks) and ``duration_s`` (seconds; met within one track) is given.
    ``artist_gap``: no artist twice within this many positions (relaxed, and said, only when the pool
    leaves no other choice); ``max_per_artist`` is never exceeded (the playlist comes out shorter instead).
    """
    if (length is None) == (duration_s is None):
        raise ValueError("give exactly one of length and duration_s")
    if length is not None and length < 1:
        raise ValueError("length must be at least 1")
    if duration_s is not None and duration_s <= 0:
        raise ValueError("duration_s must be positive")
    if arc not in ARCS:
        raise ValueError(f"arc must be one of {', '.join(ARCS)}")
    if max_per_artist < 1:
        raise ValueError("max_per_artist must be at least 1")
    notes: list[str] = []
    pool, repeats = unique_recordings(list(items))
    if repeats:
        notes.append(f"{repeats} candidate(s) were the same recording as a better-ranked one and were dropped")
    if not pool:
        return Plan([], [], notes + ["no candidates to choose from"])

    n_pool = len(pool)
    energies = [energy_of(i) for i in pool]
    tempos = [tempo_of(i) for i in pool]
    keys = [key_of(i) for i in pool]
    artists = [artists_of(i) for i in pool]
    known_d = [d for d in (duration_of(i) for i in pool) if d]
    fallback_d = sum(known_d) / len(known_d) if known_d else DEFAULT_DURATION_S
    durs = [duration_of(i) or fallback_d for i in pool]
    lo, hi = _energy_range(pool)
    rng = random.Random(seed)
    jitter = [rng.random() * 1e-9 for _ in pool]   # breaks exact ties, deterministically per seed

    scale = max(0.1, hi - lo)

    def search(candidates: list[int], w_rank: float, count: int | None, seconds: float | None) -> _State:
        """One beam search over ``candidates``: ``count`` tracks, or ``seconds`` of music (within one track)."""

        def position(state: _State, j: int) -> float:
            """Where in the playlist (0..1) the track would sit: by index, or by time at its midpoint."""
            if count is not None:
                return len(state.order) / max(1, count - 1)
            return min(1.0, (state.total_s + durs[j] / 2) / seconds)  # type: ignore[operator]

        def step_cost(state: _State, j: int) -> float:
            e = energies[j]
            c = W_ENERGY * (min(1.0, abs(e - target(position(state, j))) / scale) if e is not None else UNKNOWN)
            if state.order:
                p = state.order[-1]
                c += W_TEMPO * (tempo_step(tempos[p], tempos[j]) if tempos[p] and tempos[j] else UNKNOWN)
                c += W_KEY * (key_step(keys[p], keys[j]) if keys[p] and keys[j] else UNKNOWN)
            return c + w_rank * j / n_pool + jitter[j]

        def done(state: _State) -> bool:
            if count is not None:
                return len(state.order) >= count
            return state.total_s >= seconds  # type: ignore[operator]

        beam = [_State([], 0.0, 0.0, {})]
        finished: list[_State] = []
        while beam:
            nxt: list[_State] = []
            for state in beam:
                if done(state):
                    finished.append(state)
                    continue
                used = set(state.order)
                options = [j for j in candidates if allowed(state, used, j, artist_gap)]
                relaxed = False
                if not options and artist_gap > 0:
                    options = [j for j in candidates if allowed(state, used, j, 0)]
                    relaxed = True
                if not options:
                    finished.append(state)  # the pool (or max_per_artist) allows no more
                    continue
                scored = sorted((step_cost(state, j), j) for j in options)
                # duration: stop when stopping is closer to the target than adding the best next track
                if state.order and seconds is not None and seconds - state.total_s < durs[scored[0][1]] / 2:
                    finished.append(state)
                    continue
                for c, j in scored[:BEAM]:
                    nxt.append(state.extend(j, c, durs[j], artists[j], relaxed))
            # keep the BEAM cheapest per track placed (mean cost, so shorter and longer plans compare fairly)
            nxt.sort(key=lambda s: s.cost / len(s.order))
            beam = nxt[:BEAM]

        def final_key(s: _State) -> tuple[float, float]:
            if count is not None:
                return (-len(s.order), s.cost)
            return (abs(seconds - s.total_s), s.cost)  # type: ignore[operator]

        return min(finished, key=final_key)

    def target(x: float) -> float:
        return lo + (hi - lo) * arc_shape(arc, x)

    def allowed(state: _State, used: set[int], j: int, gap: int) -> bool:
        if j in used:
            return False
        if any(state.per_artist.get(a, 0) >= max_per_artist for a in artists[j]):
            return False
        recent = state.order[-gap:] if gap > 0 else []
        return not any(artists[j] & artists[r] for r in recent)

    # choose (rank counts), then order the chosen set (rank no longer matters: every order holds the same tracks)
    picked = search(list(range(n_pool)), W_RANK, length, duration_s)
    span = sum(durs[j] for j in picked.order)
    best = search(sorted(picked.order), 0.0, len(picked.order), None) if length is not None else \
        search(sorted(picked.order), 0.0, None, span)
    if len(best.order) < len(picked.order):  # the artist rules cannot be stricter in a subset: keep the pick
        best = picked
    chosen = [pool[j] for j in best.order]

    if length is not None and len(chosen) < length:
        why = "max_per_artist" if n_pool > len(chosen) else "the candidate pool"
        notes.append(f"only {len(chosen)} of {length} track(s): {why} allowed no more")
    longest = max((durs[j] for j in best.order), default=0.0)
    if duration_s is not None and duration_s - best.total_s > longest:
        notes.append(f"{best.total_s / 60:.1f} of {duration_s / 60:.1f} minutes: the candidates allowed no more")
    if best.gap_relaxed:
        notes.append(f"artist spread relaxed {best.gap_relaxed} time(s): the candidates had too few artists to keep "
                     f"every artist {artist_gap} positions apart")
    no_energy = sum(1 for j in best.order if energies[j] is None)
    no_flow = sum(1 for j in best.order if tempos[j] is None or keys[j] is None)
    if no_energy or no_flow:
        notes.append(f"{no_energy} track(s) without a known energy and {no_flow} without tempo/key were placed by "
                     "rank, artist spread and duration only")
    no_dur = sum(1 for j in best.order if duration_of(pool[j]) is None)
    if no_dur:
        notes.append(f"{no_dur} track(s) of unknown duration counted as {fallback_d:.0f} s")

    # why-lines, and the energy target each position was matched against
    why: list[str] = []
    targets: list[float | None] = []
    replay = _State([], 0.0, 0.0, {})

    def position(state: _State, j: int) -> float:
        if length is not None:
            return len(state.order) / max(1, len(best.order) - 1)
        return min(1.0, (state.total_s + durs[j] / 2) / span) if span else 0.0
    for pos, j in enumerate(best.order):
        x = position(replay, j)
        tgt = target(x)
        targets.append(round(tgt, 3) if energies[j] is not None else None)
        it = pool[j]
        parts = [f"recommended: {it.reasons[0]}" if it.reasons else f"ranked {j + 1} of {n_pool} candidates"]
        if energies[j] is not None:
            parts.append(f"energy {energies[j]:.2f} for the {_phase(arc, x)} (target {tgt:.2f})")
        else:
            parts.append("energy unknown")
        flow = []
        prev = best.order[pos - 1] if pos else None
        if tempos[j]:
            flow.append(f"{tempos[j]:.0f} bpm" + (f" after {tempos[prev]:.0f}" if prev is not None and tempos[prev]
                                                  else ""))
        if keys[j]:
            flow.append(f"{camelot_name(keys[prev])} -> {camelot_name(keys[j])}" if prev is not None and keys[prev]
                        else f"key {camelot_name(keys[j])}")
        if flow:
            parts.append(", ".join(flow))
        else:
            parts.append("tempo/key unknown")
        why.append("; ".join(parts))
        replay = replay.extend(j, 0.0, durs[j], artists[j], False)
    return Plan(chosen, why, notes, total_s=round(best.total_s, 1), target_energy=targets, cost=round(best.cost, 4))


def _phase(arc: str, x: float) -> str:
    if arc == "flat":
        return "steady level"
    if arc == "rise":
        return "build" if x < 0.85 else "top of the rise"
    if arc == "fall":
        return "opening high" if x < 0.15 else "wind-down"
    if arc == "peak":
        return "peak" if 0.35 <= x <= 0.65 else ("build" if x < 0.35 else "come-down")
    return "dip" if 0.35 <= x <= 0.65 else ("way down" if x < 0.35 else "way back up")


def sequence(items: list[RecommendedItem], *, length: int | None, duration_s: float | None, arc: Arc,
             max_per_artist: int, seed: int = 0) -> tuple[list[RecommendedItem], list[str]]:
    """The chosen tracks in order and a why-line per track (``plan`` has the notes and totals too)."""
    p = plan(items, length=length, duration_s=duration_s, arc=arc, max_per_artist=max_per_artist, seed=seed)
    return p.items, p.why
