"""recommend/sound.py without a server: feature mapping and distance, and CLAP on a tiny random model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from echotune_mcp.recommend import sound


def test_artifact_features_maps_analysis_onto_spotify_keys():
    analysis = {"tempo": {"bpm": 121.5}, "key": {"tonic": "F#", "mode": "minor", "confidence": 0.2},
                "loudness": {"integrated_lufs": -14.2}, "scores": {"energy": 0.61, "danceability": 0.72}}
    assert sound.artifact_features(analysis) == {"tempo": 121.5, "key": 6.0, "mode": 0.0, "loudness": -14.2,
                                                 "energy": 0.61, "danceability": 0.72}
    # what could not be measured is left out, not guessed: silence has no tempo, key or loudness
    silent = {"tempo": {"bpm": 0.0}, "key": {"tonic": "C", "mode": "major", "confidence": 0.0},
              "loudness": {"integrated_lufs": float("-inf")}, "scores": {"energy": 0.0, "danceability": 0.0}}
    assert sound.artifact_features(silent) == {"energy": 0.0, "danceability": 0.0}
    assert sound.artifact_features({"key": {"tonic": "Bb", "mode": "major", "confidence": 0.1}}) == {"key": 10.0,
                                                                                                   "mode": 1.0}


def test_camelot_wheel():
    assert sound.camelot(0, True) == (8, "B")  # C major
    assert sound.camelot(9, False) == (8, "A")  # A minor: its relative major's number
    assert sound.camelot(7, True) == (9, "B")  # G major: a fifth up, one step round
    assert sound.camelot(4, False) == (9, "A")  # E minor
    assert sound.camelot(5, True) == (7, "B")  # F major
    assert sound.key_name(9, 0) == "A minor" and sound.key_name(10, 1) == "Bb major" and sound.key_name(1, None) == "Db"


A_MINOR_120 = {"tempo": 120.0, "key": 9.0, "mode": 0.0, "energy": 0.7, "danceability": 0.6, "loudness": -9.0}


@pytest.mark.parametrize("other, nearer_than", [
    # same key beats a relative key beats a fifth away (same mode) beats a tritone
    ({"key": 9, "mode": 0}, {"key": 0, "mode": 1}),
    ({"key": 0, "mode": 1}, {"key": 2, "mode": 1}),
    ({"key": 4, "mode": 0}, {"key": 3, "mode": 0}),
    # 2 bpm off beats 10 off; half time is nearer than 10 % off but farther than an exact match
    ({"tempo": 122}, {"tempo": 132}),
    ({"tempo": 60}, {"tempo": 132}),
    ({"tempo": 120}, {"tempo": 60}),
    ({"energy": 0.65}, {"energy": 0.2}),
    ({"loudness": -8}, {"loudness": -20}),
])
def test_feature_distance_orders_as_documented(other, nearer_than):
    near = sound.feature_distance(A_MINOR_120, other)
    far = sound.feature_distance(A_MINOR_120, nearer_than)
    assert 0.0 <= near < far <= 1.0


def test_feature_distance_values_and_edges():
    assert sound.feature_distance(A_MINOR_120, A_MINOR_120) == 0.0
    assert sound.feature_distance(A_MINOR_120, {"key": 0, "mode": 1}) == pytest.approx(0.75 / 6.75)
    assert sound.feature_distance(A_MINOR_120, {"key": 4, "mode": 0}) == pytest.approx(1 / 6.75)
    assert sound.feature_distance(A_MINOR_120, {"key": 6, "mode": 1}) == pytest.approx(1.0)  # F# major: 2B vs 8A
    assert sound.feature_distance(A_MINOR_120, {"tempo": 150}) == pytest.approx(1.0)  # 25 % apart: as far as it gets
    assert sound.feature_distance(A_MINOR_120, {"loudness": -15}) == pytest.approx(0.5)
    # Spotify's key -1 (none detected) and keys nobody shares are left out; nothing shared is infinitely far
    assert sound.feature_distance(A_MINOR_120, {"key": -1, "mode": 1, "tempo": 120}) == 0.0
    assert math.isinf(sound.feature_distance(A_MINOR_120, {"speechiness": 0.1, "duration_ms": 1e5}))
    # symmetric, and the vectorised form gives the same numbers
    others = [{"tempo": 61, "key": 0, "mode": 1}, {"energy": 0.1, "valence": 0.3}, {}, {"tempo": 240, "key": -1}]
    for o in others:
        assert sound.feature_distance(o, A_MINOR_120) == pytest.approx(sound.feature_distance(A_MINOR_120, o))
    vec = sound.feature_distances(A_MINOR_120, others)
    assert vec.tolist() == pytest.approx([sound.feature_distance(A_MINOR_120, o) for o in others])


def test_closeness_reasons_name_the_close_features():
    reasons = sound.closeness_reasons(A_MINOR_120, {"tempo": 122, "key": 9, "mode": 0, "energy": 0.68})
    assert set(reasons) == {"same key A minor", "122 vs 120 bpm", "similar energy (0.68 vs 0.70)"}
    assert sound.closeness_reasons(A_MINOR_120, {"tempo": 61, "key": 0, "mode": 1}) == [
        "relative key (C major vs A minor)", "half-time: 61 vs 120 bpm"]
    assert sound.closeness_reasons(A_MINOR_120, {"key": 4, "mode": 0}) == [
        "neighbouring key on the circle of fifths (E minor vs A minor)"]
    assert sound.closeness_reasons(A_MINOR_120, {"tempo": 90, "key": 3, "mode": 1, "energy": 0.1}) == []


# -- CLAP -------------------------------------------------------------------------------------------------
def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-level alphabet, so a RoBERTa BPE tokenizer with no merges can spell any text."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


TINY_DIM = 24


def save_tiny_clap(folder: Path, seed: int = 0, fusion: bool = False) -> Path:
    """A randomly initialised tiny CLAP (model, tokenizer, feature extractor) in the Hugging Face layout that
    ``models pull clap-htsat-unfused`` downloads; its audio window is 2 s instead of 10 s. ``fusion``: the
    feature-fusion variant (laion/clap-htsat-fused)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {t: i for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>", "<mask>", *_bytes_to_unicode().values()])}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = transformers.RobertaTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    extractor = transformers.ClapFeatureExtractor(feature_size=16, sampling_rate=48000, hop_length=480, max_length_s=2,
                                                  fft_window_size=1024, truncation="fusion" if fusion else "rand_trunc",
                                                  padding="repeatpad")
    torch.manual_seed(seed)
    config = transformers.ClapConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=37, max_position_embeddings=64, pad_token_id=1, bos_token_id=0,
                         eos_token_id=2),
        audio_config=dict(num_mel_bins=16, spec_size=64, window_size=4, patch_stride=2, patch_embeds_hidden_size=16,
                          hidden_size=32, depths=[1, 1], num_attention_heads=[2, 2], num_hidden_layers=2,
                          enable_fusion=fusion, fusion_type="aff_2d" if fusion else None),
        projection_dim=TINY_DIM)
    transformers.ClapModel(config).eval().save_pretrained(folder)
    transformers.ClapProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_clap(tmp_path_factory) -> sound.ClapEmbedder:
    folder = save_tiny_clap(tmp_path_factory.mktemp("weights") / "clap-htsat-unfused")
    return sound.ClapEmbedder.from_dir(folder)


def _tone(freq: float, seconds: float, sr: int = 44100, stereo: bool = False) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    y = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([y, y], axis=1) if stereo else y


def test_clap_text_embeddings(tiny_clap):
    texts = ["warm lofi hip hop", "fast techno", "a", "warm lofi hip hop"]
    rows = tiny_clap.text(texts)
    assert rows.shape == (4, TINY_DIM) and rows.dtype == np.float32
    assert np.linalg.norm(rows, axis=1) == pytest.approx(np.ones(4), abs=1e-5)
    assert np.allclose(rows[0], rows[3], atol=1e-6)  # same text, same vector, wherever it sits in the batch
    assert not np.allclose(rows[0], rows[1], atol=1e-3)
    # a batch (padded to its longest text) equals one at a time, and asking again gives the same numbers
    one_by_one = np.stack([tiny_clap.text([t])[0] for t in texts])
    assert np.allclose(rows, one_by_one, atol=1e-5)
    assert np.array_equal(tiny_clap.text(texts), rows)
    assert tiny_clap.text([]).shape == (0, TINY_DIM)


def test_clap_audio_embeddings(tiny_clap):
    a, b = _tone(220, 1.5), _tone(1760, 1.5) * np.linspace(0, 1, int(1.5 * 44100), dtype=np.float32)
    va = tiny_clap.audio(a, 44100)
    assert va.shape == (TINY_DIM,) and np.linalg.norm(va) == pytest.approx(1.0, abs=1e-5)
    assert np.array_equal(tiny_clap.audio(a, 44100), va)  # deterministic
    # resampled to the model's 48 kHz: the same sound at another rate lands (nearly) on the same vector
    assert np.dot(tiny_clap.audio(_tone(220, 1.5, sr=48000), 48000), va) > 0.999
    # stereo is mixed to mono first
    assert np.allclose(tiny_clap.audio(_tone(220, 1.5, stereo=True), 44100), va, atol=1e-5)
    vb = tiny_clap.audio(b, 44100)
    assert not np.allclose(va, vb, atol=1e-3)
    # a long clip (7 s: four 2-s windows) is deterministic, and a batch equals one clip at a time
    long = _tone(330, 7.0)
    batch = tiny_clap.audios([(a, 44100), (long, 44100), (b, 44100)])
    assert batch.shape == (3, TINY_DIM)
    assert np.allclose(batch, np.stack([va, tiny_clap.audio(long, 44100), vb]), atol=1e-5)
    assert np.linalg.norm(batch, axis=1) == pytest.approx(np.ones(3), abs=1e-5)
    assert tiny_clap._windows(long, 44100)[-1].size == tiny_clap.window == 96000
    with pytest.raises(ValueError, match="no audio"):
        tiny_clap.audio(np.zeros(0, np.float32), 44100)


def test_clap_fused_model_is_deterministic_and_batch_independent(tmp_path):
    """The fusion variant's extractor marks a random clip 'longer' when none is; ours never depends on that."""
    emb = sound.ClapEmbedder.from_dir(save_tiny_clap(tmp_path / "fused", fusion=True))
    clips = [(_tone(220, 1.5), 44100), (_tone(880, 1.0), 44100), (_tone(330, 5.0), 44100)]
    batch = emb.audios(clips)
    assert batch.shape == (3, TINY_DIM)
    for _ in range(3):
        assert np.allclose(emb.audios(clips), batch, atol=1e-5)
    assert np.allclose(np.stack([emb.audio(*c) for c in clips]), batch, atol=1e-5)


def test_clap_availability_names_the_fix(tmp_path, settings):
    from dataclasses import replace

    s = replace(settings, models_dir=tmp_path / "models")
    ok, why = sound.ClapEmbedder.available(s)
    assert not ok and "models pull clap-htsat-unfused" in why and str(tmp_path / "models") in why
    with pytest.raises(sound.ClapUnavailable, match="models pull clap-htsat-unfused"):
        sound.get_embedder(s)
    (tmp_path / "models" / "clap-htsat-unfused").mkdir(parents=True)
    (tmp_path / "models" / "clap-htsat-unfused" / "config.json").write_text("{}")
    ok, why = sound.ClapEmbedder.available(s)
    assert not ok and "no weights file" in why
    save_tiny_clap(tmp_path / "models" / "clap-htsat-unfused")
    assert sound.ClapEmbedder.available(s) == (True, f"CLAP weights at {tmp_path / 'models' / 'clap-htsat-unfused'}")
    try:
        emb = sound.get_embedder(s)
        assert emb.dim == TINY_DIM and sound.get_embedder(s) is emb  # loaded once
    finally:
        sound.clear_embedders()


def test_models_pull_puts_clap_where_similar_to_reads_it(tmp_path, settings):
    """The model card makes `echotune-mcp models pull clap-htsat-unfused [--from-dir]` fill the folder read here."""
    from dataclasses import replace

    from echotune_mcp.engine.model_manager import ModelManager

    s = replace(settings, models_dir=tmp_path / "models")
    manager = ModelManager(s)
    assert manager.card("clap-htsat-unfused").license == "Apache-2.0"
    manager.pull("clap-htsat-unfused", from_dir=save_tiny_clap(tmp_path / "download"), log=lambda _m: None)
    assert manager.verify("clap-htsat-unfused") == [] and sound.clap_dir(s) == manager.folder("clap-htsat-unfused")
    assert sound.clap_status(s)[0]
    try:
        assert sound.get_embedder(s).text(["x"]).shape == (1, TINY_DIM)
    finally:
        sound.clear_embedders()


def test_clap_model_setting_is_a_folder_name(monkeypatch):
    from echotune_mcp.config import Settings

    monkeypatch.setenv("ECHOTUNE_CLAP_MODEL", "larger_clap_music")
    assert Settings.from_env().clap_model == "larger_clap_music"
    for bad in ("../etc", "a/b", "/abs"):
        monkeypatch.setenv("ECHOTUNE_CLAP_MODEL", bad)
        with pytest.raises(ValueError, match="ECHOTUNE_CLAP_MODEL"):
            Settings.from_env()


def test_feature_neighbours_share_genre_well_above_chance():
    """On real tracks, using only the keys an artifact has: the nearest track by feature_distance is in the same
    playlist genre far more often than chance (docs/RECOMMENDATION.md reports the full-data numbers)."""
    import csv
    from collections import Counter

    from tests.conftest import shared_path

    rows: dict[str, dict] = {}
    for path in sorted(shared_path("data", "recsys", "tidytuesday_spotify_songs_2020").glob("spotify_songs_part*.csv")):
        with path.open(encoding="utf-8", newline="") as fh:
            for r in csv.DictReader(fh):
                if r["tempo"] not in ("", "NA"):
                    rows.setdefault(r["track_id"], r)
    keys = ("tempo", "key", "mode", "loudness", "energy", "danceability")
    every = list(rows.values())
    sample = [every[i] for i in np.random.default_rng(1).choice(len(every), 10000, replace=False)]
    feats = [{k: float(r[k]) for k in keys} for r in sample]
    genre = np.array([r["playlist_genre"] for r in sample])
    chance = sum((c / len(genre)) ** 2 for c in Counter(genre).values())
    queries = np.random.default_rng(0).choice(len(feats), 200, replace=False)
    same = 0
    for q in queries:
        d = sound.feature_distances(feats[q], feats)
        d[q] = np.inf
        same += genre[int(np.argmin(d))] == genre[q]
    assert chance < 0.2
    print(f"nearest neighbour in the same genre {same / len(queries):.2f}, chance {chance:.2f}")
    assert same / len(queries) > 1.6 * chance, (same / len(queries), chance)
