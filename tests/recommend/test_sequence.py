"""sequence(): energy arcs followed, transitions smoother than chance, artist spread, duration targets."""

from __future__ import annotations

import random
from statistics import mean

import pytest
from scipy.stats import spearmanr

from echotune_mcp.recommend.sequence import key_of, plan, sequence, transition_cost
from echotune_mcp.recommend.service import RecommendedItem


def item(i: int, artist: str, *, energy=None, tempo=None, key=None, mode=None, duration_s=None, title=None,
         spotify_id=None, isrc=None) -> RecommendedItem:
    feats = {k: v for k, v in {"energy": energy, "tempo": tempo, "key": key, "mode": mode,
                                "duration_ms": duration_s * 1000 if duration_s else None}.items() if v is not None}
    return RecommendedItem(item_id=f"spotify:track:{i}", kind="track", title=title or f"Song {i}", artists=[artist],
                           spotify_id=spotify_id, isrc=isrc, features=feats, score=1.0 - i / 1000,
                           reasons=[f"listeners of Seed also play Song {i}"], source="corpus:test")


def pool(n: int = 90, artists: int = 30, seed: int = 7) -> list[RecommendedItem]:
    r = random.Random(seed)
    return [item(i, f"Artist {i % artists}", energy=r.random(), tempo=r.uniform(70, 170), key=r.randrange(12),
                 mode=r.randrange(2), duration_s=r.uniform(150, 330)) for i in range(n)]


@pytest.mark.parametrize("arc", ["rise", "fall", "peak", "valley"])
def test_energy_follows_the_arc(arc):
    p = plan(pool(), length=14, duration_s=None, arc=arc, max_per_artist=2)
    assert len(p.items) == 14
    energies = [it.features["energy"] for it in p.items]
    rho = spearmanr(energies, p.target_energy).statistic
    assert rho > 0.8, (arc, rho, energies)
    if arc == "rise":
        assert mean(energies[:4]) + 0.3 < mean(energies[-4:])
    assert all(f"energy {e:.2f}" in w for e, w in zip(energies, p.why, strict=True))


def test_transitions_smoother_than_random_orders():
    p = plan(pool(), length=15, duration_s=None, arc="flat", max_per_artist=2)
    chosen = p.items

    def roughness(order):
        return mean(transition_cost(a, b) for a, b in zip(order, order[1:]))

    r = random.Random(0)
    shuffled = []
    for _ in range(300):
        order = chosen[:]
        r.shuffle(order)
        shuffled.append(roughness(order))
    ours, chance = roughness(chosen), mean(shuffled)
    assert ours < 0.5 * chance, (ours, chance)
    # the why-lines carry the flow: "<bpm> bpm after <bpm>, 8A -> 9A"
    assert " bpm after " in p.why[1] and " -> " in p.why[1]


def test_half_and_double_time_count_as_close():
    a = item(1, "A", tempo=70.0, key=0, mode=1)
    b = item(2, "B", tempo=140.0, key=0, mode=1)
    c = item(3, "C", tempo=100.0, key=0, mode=1)
    assert transition_cost(a, b) < transition_cost(a, c)
    assert key_of(item(4, "D", key=0, mode=1)) == (8, "B") and key_of(item(5, "E", key=9, mode=0)) == (8, "A")


def test_artist_spread_and_cap():
    items = [item(i, f"Band {i % 5}", energy=0.5) for i in range(50)]   # 5 artists, 10 tracks each
    p = plan(items, length=10, duration_s=None, arc="flat", max_per_artist=2, artist_gap=3)
    names = [it.artists[0] for it in p.items]
    assert len(names) == 10 and max(names.count(a) for a in set(names)) <= 2
    for i in range(len(names)):
        assert names[i] not in names[max(0, i - 3):i], names
    # three artists at most two each: the playlist comes out short, and says why
    few = [item(i, f"Trio {i % 3}", energy=0.5) for i in range(30)]
    p = plan(few, length=10, duration_s=None, arc="flat", max_per_artist=2)
    assert len(p.items) == 6 and any("only 6 of 10" in n and "max_per_artist" in n for n in p.notes)
    # two artists cannot be kept three apart: relaxed, and the notes say so
    duo = [item(i, f"Duo {i % 2}", energy=0.5) for i in range(10)]
    p = plan(duo, length=4, duration_s=None, arc="flat", max_per_artist=2)
    assert len(p.items) == 4 and any("artist spread relaxed" in n for n in p.notes)


@pytest.mark.parametrize("minutes", [12, 45, 90])
def test_duration_target_met_within_one_track(minutes):
    p = plan(pool(), length=None, duration_s=minutes * 60, arc="peak", max_per_artist=3)
    durations = [it.features["duration_ms"] / 1000 for it in p.items]
    assert p.total_s == pytest.approx(sum(durations), abs=0.2)
    assert abs(p.total_s - minutes * 60) <= max(durations), (p.total_s, minutes * 60)


def test_unique_recordings_only():
    items = [item(1, "Miles Davis", title="So What", spotify_id="x1", energy=0.4),
             item(2, "Miles Davis", title="So What (Remastered 2009)", energy=0.4),   # same artist + title
             item(3, "Someone", title="Other", spotify_id="x1", energy=0.4),          # same Spotify id
             item(4, "Bill Evans", title="Peace Piece", isrc="USAB1", energy=0.4),
             item(5, "Bill Evans Trio", title="Peace Piece (Live)", isrc="usab1", energy=0.4)]  # same ISRC
    p = plan(items, length=5, duration_s=None, arc="flat", max_per_artist=3)
    assert sorted(it.item_id for it in p.items) == ["spotify:track:1", "spotify:track:4"]
    assert any("3 candidate(s) were the same recording" in n for n in p.notes)


def test_tracks_without_features_are_placed_and_reported():
    items = pool(20, 20)[:10] + [item(100 + i, f"Quiet {i}") for i in range(6)]
    p = plan(items, length=16, duration_s=None, arc="rise", max_per_artist=1)
    assert len(p.items) == 16
    unknown = [w for it, w in zip(p.items, p.why, strict=True) if "energy" not in it.features]
    assert len(unknown) == 6 and all("energy unknown" in w and "tempo/key unknown" in w for w in unknown)
    assert any("6 track(s) without a known energy" in n for n in p.notes)
    assert any("unknown duration" in n for n in p.notes)


def test_sequence_api_and_bad_arguments():
    order, why = sequence(pool(), length=5, duration_s=None, arc="rise", max_per_artist=1, seed=3)
    assert len(order) == len(why) == 5 and why[0].startswith("recommended: listeners of Seed")
    assert sequence(pool(), length=5, duration_s=None, arc="rise", max_per_artist=1, seed=3)[0] == order
    with pytest.raises(ValueError, match="exactly one"):
        sequence(pool(), length=5, duration_s=60.0, arc="rise", max_per_artist=1)
    with pytest.raises(ValueError, match="arc"):
        sequence(pool(), length=5, duration_s=None, arc="zigzag", max_per_artist=1)  # type: ignore[arg-type]
    assert sequence([], length=5, duration_s=None, arc="flat", max_per_artist=1) == ([], [])
