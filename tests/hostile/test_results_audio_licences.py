"""Issue #13, items 4, 5 and 8: results say what was done, hostile audio is refused before it is
decoded, and licences cannot be laundered.

Each test here failed before its fix. Crafted files are a few hundred bytes whose headers lie
(an enormous frame count, an absurd sample rate or channel count); the refusal must come from the
header, so the tests also bound the memory the call may allocate (tracemalloc sees numpy's buffers)
and its time.
"""

from __future__ import annotations

import base64
import io
import json
import os
import struct
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from echotune_mcp.music.audio_io import AudioError, decode_audio, encode_audio

OWNER = "local"


def text_of(result) -> str:
    return " ".join(b.text for b in result.content if getattr(b, "type", "") == "text")


async def run_job(client, tool: str, args: dict) -> dict:
    result = await client.call_tool(tool, {**args, "wait_seconds": 25})
    assert not result.is_error, text_of(result)
    data = result.structured_content
    while data["status"] in ("queued", "running"):
        data = (await client.call_tool("get_job", {"job_id": data["job_id"], "wait_seconds": 25})).structured_content
    assert data["status"] == "succeeded", data
    return data


# -- crafted files ------------------------------------------------------------------------------------------
def lying_flac(sample_rate: int, channels: int, claimed_frames: int) -> bytes:
    """A real 1000-frame FLAC whose STREAMINFO claims ``claimed_frames`` frames."""
    buf = io.BytesIO()
    sf.write(buf, np.zeros((1000, channels), np.float32), sample_rate, format="FLAC")
    data = bytearray(buf.getvalue())
    bits = int.from_bytes(data[18:26], "big")  # sample rate 20 | channels-1 3 | bps-1 5 | total samples 36
    bits = (bits & ~((1 << 36) - 1)) | claimed_frames
    data[18:26] = bits.to_bytes(8, "big")
    return bytes(data)


def lying_wav(channels: int = 1, sample_rate: int = 8000, frames: int = 200) -> bytes:
    block = channels * 2
    body = b"\0" * (frames * block)
    fmt = struct.pack("<HHIIHH", 1, channels, sample_rate, (sample_rate * block) % 2**32, block, 16)
    riff = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(body)) + body
    return b"RIFF" + struct.pack("<I", len(riff)) + riff


# 122 bytes claiming 100 s at 655,350 Hz x 8 channels: 2 GiB of float32 once decoded.
HUGE_RATE_FLAC = lying_flac(655350, 8, 655350 * 100)
CRAFTED = {
    "huge-rate-flac": HUGE_RATE_FLAC,
    "absurd-rate-wav": lying_wav(sample_rate=2_000_000_000),
    "many-channel-wav": lying_wav(channels=1024, frames=20),
}


class Bounded:
    """Time and peak traced allocation of a block (numpy buffers are traced)."""

    def __enter__(self):
        tracemalloc.start()
        self.t0 = time.monotonic()
        return self

    def __exit__(self, *exc):
        self.seconds = time.monotonic() - self.t0
        self.peak_mb = tracemalloc.get_traced_memory()[1] / 1e6
        tracemalloc.stop()
        return False


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_decode_refuses_lying_headers_before_decoding(name):
    with Bounded() as b, pytest.raises(AudioError) as err:
        decode_audio(CRAFTED[name], max_seconds=600, what="upload")
    assert b.peak_mb < 20 and b.seconds < 2, (b.peak_mb, b.seconds)
    assert any(w in str(err.value) for w in ("sample rate", "channels", "decodes to")), str(err.value)


def test_decode_refuses_over_the_decoded_bytes_cap():
    honest = encode_audio(np.zeros((48000, 2), np.float32), 48000, "flac")
    with pytest.raises(AudioError, match="decodes to"):
        decode_audio(honest, max_seconds=600, what="clip", max_decoded_bytes=100_000)
    assert decode_audio(honest, max_seconds=600, what="clip").samples.shape == (48000, 2)


async def test_every_audio_input_refuses_a_lying_header(make_client, settings):
    allowed = Path(settings.allowed_roots[0])
    (allowed / "evil.flac").write_bytes(HUGE_RATE_FLAC)
    evil_path = str(allowed / "evil.flac")
    async with make_client() as (client, app):
        calls = [
            ("import_audio", {"data_base64": base64.b64encode(HUGE_RATE_FLAC).decode(), "filename": "evil.flac"},
             "data_base64"),
            ("analyze_audio", {"audio": evil_path}, "audio"),
            ("separate_stems", {"audio": evil_path, "model": "dsp"}, "audio"),
            ("remix", {"stems": {"a": evil_path}}, "stems.a"),
        ]
        for tool, args, field in calls:
            with Bounded() as b:
                r = await client.call_tool(tool, args)
            assert r.is_error and field in text_of(r) and "sample rate" in text_of(r), (tool, text_of(r))
            assert b.peak_mb < 64 and b.seconds < 5, (tool, b.peak_mb, b.seconds)
        assert await app.storage.jobs.count(OWNER) == 0


async def test_resource_uris_never_read_local_paths(make_client, settings, monkeypatch, tmp_path):
    """``~/...`` passes the SDK's absolute-path check; the analysis resource must still not open it."""
    from mcp.shared.exceptions import MCPError

    monkeypatch.setenv("HOME", str(tmp_path))
    allowed = Path(settings.allowed_roots[0])
    y = (0.1 * np.sin(np.linspace(0, 2000, 16000))).astype(np.float32)[:, None]
    sf.write(str(allowed / "mine.wav"), y, 16000)
    async with make_client() as (client, _):
        # the file is reachable as a tool argument (allowed root) ...
        ok = await client.call_tool("analyze_audio", {"audio": "~/allowed/mine.wav"})
        assert not ok.is_error, text_of(ok)
        # ... but never through a resource URI
        for suffix in ("analysis", "content", "waveform.png", "provenance", ""):
            uri = "echotune://artifacts/~%2Fallowed%2Fmine.wav" + (f"/{suffix}" if suffix else "")
            with pytest.raises(MCPError):
                await client.read_resource(uri)


async def test_verify_credentials_caps_file_and_manifest_size(make_client, settings):
    from echotune_mcp.licensing.service import MANIFEST_MAX_BYTES, VERIFY_MAX_BYTES

    allowed = Path(settings.allowed_roots[0])
    song = allowed / "song.wav"
    song.write_bytes(encode_audio(np.zeros((800, 1), np.float32), 8000, "wav"))
    sidecar = allowed / "song.wav.manifest.json"
    with open(sidecar, "wb") as fh:  # sparse: no disk used, and nothing should read it
        fh.truncate(MANIFEST_MAX_BYTES + 1)
    huge = allowed / "huge.wav"
    with open(huge, "wb") as fh:
        fh.truncate(VERIFY_MAX_BYTES + 1)
    async with make_client() as (client, _):
        with Bounded() as b:
            r = await client.call_tool("verify_credentials", {"path": str(song)})
        assert r.is_error and "manifest" in text_of(r) and str(MANIFEST_MAX_BYTES) in text_of(r), text_of(r)
        with Bounded() as b2:
            r = await client.call_tool("verify_credentials", {"path": str(huge), "manifest": str(sidecar)})
        assert r.is_error and "path" in text_of(r) and str(VERIFY_MAX_BYTES) in text_of(r), text_of(r)
        assert b.peak_mb < 20 and b2.peak_mb < 20, (b.peak_mb, b2.peak_mb)


# -- item 8: licences cannot be laundered -------------------------------------------------------------------
def _song(path: Path, seconds: float = 1.0, sr: int = 16000) -> str:
    rng = np.random.default_rng(3)
    sf.write(str(path), (0.1 * rng.standard_normal((int(seconds * sr), 2))).astype(np.float32), sr)
    return str(path)


async def test_stems_and_remixes_of_a_local_file_are_not_cleared(make_client, settings):
    local = _song(Path(settings.allowed_roots[0]) / "someone-elses.wav")
    async with make_client() as (client, _):
        sep = await run_job(client, "separate_stems", {"audio": local, "model": "dsp"})
        rmx = await run_job(client, "remix", {"stems": {"song": local}, "gains_db": {"song": -3}})
        for art in (sep["result"]["stems"]["vocals"], sep["result"]["stem_set_artifact_id"],
                    rmx["result"]["mix_artifact_id"]):
            check = (await client.call_tool("check_usage", {"artifact": art, "use": "commercial_release"})
                     ).structured_content
            assert check["decision"] == "not_allowed", check
            assert any(r["rule"] == "upload-unattested" for r in check["reasons"]), check["reasons"]
            assert check["permitted_licenses"] == []


async def test_deleting_an_upload_keeps_its_rights_in_the_lineage(make_client):
    wav = encode_audio((0.1 * np.random.default_rng(1).standard_normal((16000, 1))).astype(np.float32), 16000, "wav")
    async with make_client() as (client, app):
        up = (await client.call_tool("import_audio", {"data_base64": base64.b64encode(wav).decode(),
                                                      "filename": "found-online.wav"})).structured_content
        derived = await run_job(client, "remix", {"artifact": up["artifact_id"], "gains_db": {"mix": -2}})
        mix_id = derived["result"]["mix_artifact_id"]
        # the mix was made from it: without confirm (and no elicitation in this client) nothing is deleted
        r = await client.call_tool("delete_artifact", {"artifact": up["artifact_id"]})
        assert r.is_error and "confirmation required" in text_of(r) and mix_id in text_of(r), text_of(r)
        assert await app.storage.artifacts.get(OWNER, up["artifact_id"]) is not None
        r = await client.call_tool("delete_artifact", {"artifact": up["artifact_id"], "confirm": True})
        assert not r.is_error, text_of(r)
        assert await app.storage.artifacts.get(OWNER, up["artifact_id"]) is None  # the record itself is gone
        r = await client.call_tool("set_license", {"artifact": mix_id, "license": "CC0-1.0"})
        assert r.is_error and "license" in text_of(r) and up["artifact_id"] in text_of(r), text_of(r)
        check = (await client.call_tool("check_usage", {"artifact": mix_id, "use": "commercial_release"})
                 ).structured_content
        assert check["decision"] == "not_allowed" and check["permitted_licenses"] == [], check
        assert {r["rule"] for r in check["reasons"]} >= {"upload-unattested", "lineage-deleted"}
        graph = (await client.call_tool("get_provenance", {"artifact": mix_id})).structured_content
        gone = next(n for n in graph["nodes"] if n["artifact_id"] == up["artifact_id"])
        assert gone["missing"] is True and gone["provenance"]["rights"] == "unknown", gone


async def test_signature_check_compares_the_whole_public_key(make_client, settings, monkeypatch):
    """A manifest signed by another key whose short fingerprint equals ours is not 'signed by this server'."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from echotune_mcp.licensing import credentials, keys

    ours = keys.signing_key(settings.data_dir, settings.secret_key)
    # model a fingerprint collision: every key now has our key id (what a 64-bit prefix allows in principle)
    monkeypatch.setattr(credentials, "key_id_of", lambda raw: ours.key_id)
    other = keys.SigningKey(private=(p := Ed25519PrivateKey.generate()), public=p.public_key(),
                            key_id=ours.key_id, path=ours.path)
    allowed = Path(settings.allowed_roots[0])
    song = allowed / "forged.wav"
    song.write_bytes(encode_audio(np.zeros((800, 1), np.float32), 8000, "wav"))
    import hashlib

    claim = {"asset": {"hash": {"alg": "sha256", "value": hashlib.sha256(song.read_bytes()).hexdigest()}},
             "echotune.license": {"license": "CC0-1.0"}}
    (allowed / "forged.wav.manifest.json").write_text(json.dumps(credentials.sign(claim, other)))
    async with make_client() as (client, _):
        out = (await client.call_tool("verify_credentials", {"path": str(song)})).structured_content
    assert out["signature_valid"] is True and out["content_matches"] is True
    assert out["signed_by_this_server"] is False and out["valid"] is False, out
    assert os.path.exists(ours.path)


# -- item 4: results say what was done ----------------------------------------------------------------------
@pytest.fixture
def tiny_musicgen(settings, tmp_path):
    """The engine tests' tiny random MusicGen, pulled from a folder as `models pull` would."""
    from echotune_mcp.engine.model_manager import ModelManager
    from tests.engine.test_musicgen_tool import save_tiny_checkpoint

    src = tmp_path / "tiny-musicgen"
    save_tiny_checkpoint(src)
    ModelManager(settings).pull("musicgen-small", from_dir=src, log=lambda _m: None)
    yield settings
    from echotune_mcp.engine.musicgen_backend import close_engines

    close_engines()


def _sha(job: dict, kind: str = "audio") -> str:
    return next(a["sha256"] for a in job["artifacts"] if a["kind"] == kind)


async def test_musicgen_folds_controls_into_its_prompt_and_reports_the_rest(tiny_musicgen, make_client,
                                                                             monkeypatch):
    from echotune_mcp.engine.engine import Engine

    heard: list[str] = []  # what the engine was asked to read (a spy: the real engine still runs)
    real_generate = Engine.generate

    async def spy(self, **kwargs):
        heard.append(kwargs["prompt"])
        return await real_generate(self, **kwargs)

    monkeypatch.setattr(Engine, "generate", spy)
    base = {"duration_s": 0.5, "backend": "musicgen", "seed": 3}
    controls = {"genre": "ambient", "mood": "dark", "bpm": 85, "key": "A minor", "instruments": ["piano"],
                "structure": ["intro", "outro"]}
    async with make_client() as (client, _):
        folded = await run_job(client, "generate_music", {"prompt": "slow dreamy pad", **controls, **base})
        out = folded["result"]
        assert out["backend"] == "musicgen" and out["backend_reason"] == "requested: backend=musicgen"
        assert out["prompt_sent"] == "slow dreamy pad, ambient, dark, 85 bpm, A minor, with piano"
        assert set(out["applied"]) == {"genre", "mood", "bpm", "key", "instruments"}
        assert all("added to the MusicGen prompt" in v["how"] for v in out["applied"].values()), out["applied"]
        # 'dreamy' reads as calm: the conflict is said, not hidden
        assert "also says 'calm'" in out["applied"]["mood"]["how"]
        assert list(out["not_applied"]) == ["structure"] and "section" in out["not_applied"]["structure"]["reason"]
        assert "structure" not in out["parameters"]
        # the folded text is what the engine read, and what the signed provenance records
        assert heard == [out["prompt_sent"]]
        mix = (await client.call_tool("get_provenance", {"artifact": out["mix_artifact_id"], "depth": 0})
               ).structured_content["nodes"][0]["provenance"]
        assert mix["prompt"] == out["prompt_sent"] and mix["parameters"]["bpm"] == 85
        typed = await run_job(client, "generate_music", {"prompt": out["prompt_sent"], **base})
        assert typed["result"]["prompt_sent"] == out["prompt_sent"] == heard[-1]  # nothing folded twice
        assert _sha(typed) == _sha(folded)
        bare = await run_job(client, "generate_music", {"prompt": "slow dreamy pad", **base})
        assert heard[-1] == "slow dreamy pad"
        res = bare["result"]
        assert res["applied"]["bpm"]["value"] == "slow" and res["applied"]["mood"]["value"] == "calm", res["applied"]
        assert all("prompt text" in v["how"] for v in res["applied"].values()) and res["not_applied"] == {}
        # nobody named a key, genre, structure, meter or feel: none is claimed, MusicGen chose them
        assert set(res["left_to_model"]) == {"genre", "key", "structure", "meter", "feel"}
        assert not {"key", "genre", "structure", "meter", "feel"} & set(res["parameters"]), res["parameters"]
        # the interpretation says the same: composer defaults are not claimed for MusicGen
        it = res["interpreted"]
        assert it["key"]["value"] is None and "left to the model" in it["key"]["musicgen"]
        assert it["tempo"]["source"] == "prompt" and "prompt text" in it["tempo"]["musicgen"]
        # meter and feel arguments are folded into the text like the other controls
        waltz = await run_job(client, "generate_music", {"prompt": "slow dreamy pad", "meter": "3/4",
                                                          "feel": "swing", **base})
        assert waltz["result"]["prompt_sent"] == "slow dreamy pad, in 3/4 time, swing feel"
        assert waltz["result"]["interpreted"]["meter"]["source"] == "argument"


async def test_composer_result_names_its_backend_and_reason(make_client):
    async with make_client() as (client, _):
        job = await run_job(client, "generate_music", {"prompt": "calm piano", "duration_s": 3, "seed": 2,
                                                       "backend": "auto", "structure": ["intro", "outro"]})
    out = job["result"]
    assert out["backend"] == "composer" and out["not_applied"] == {}
    assert out["backend_reason"].startswith("backend=auto and MusicGen cannot run here"), out["backend_reason"]


async def test_regenerate_stem_reports_the_instruction_and_gives_a_new_take_each_call(make_client):
    async with make_client() as (client, _):
        first = await run_job(client, "generate_music", {"prompt": "funk groove, 100 bpm", "duration_s": 4, "seed": 5})
        mix = first["result"]["mix_artifact_id"]
        args = {"artifact": mix, "stem": "drums", "instruction": "busier drums, with more cowbell"}
        a = await run_job(client, "regenerate_stem", args)
        b = await run_job(client, "regenerate_stem", args)
        assert a["result"]["stems"]["drums"] != b["result"]["stems"]["drums"]  # same arguments, a new take
        inst = a["result"]["instruction"]
        assert [u["text"] for u in inst["understood"]] == ["busier drums"]
        assert inst["understood"][0]["changes"] == {"density": 1.6}
        assert [i["text"] for i in inst["ignored"]] == ["with more cowbell"]
        # a seed repeats a take exactly
        seeded = {**args, "seed": a["result"]["seed"]}
        c = await run_job(client, "regenerate_stem", seeded)
        d = await run_job(client, "regenerate_stem", seeded)
        sha = lambda job: next(x["sha256"] for x in job["artifacts"] if x["kind"] == "stem")  # noqa: E731
        assert sha(c) == sha(d) == sha(a)


async def test_continue_from_refuses_a_lying_header_before_decoding(tiny_musicgen, make_client):
    allowed = Path(tiny_musicgen.allowed_roots[0])
    (allowed / "evil.flac").write_bytes(HUGE_RATE_FLAC)
    async with make_client() as (client, app):
        with Bounded() as b:
            r = await client.call_tool("generate_music", {"prompt": "ambient pad", "duration_s": 0.5,
                                                          "continue_from": str(allowed / "evil.flac")})
        assert r.is_error and "continue_from" in text_of(r) and "sample rate" in text_of(r), text_of(r)
        assert b.peak_mb < 64, b.peak_mb
        assert await app.storage.jobs.count(OWNER) == 0
