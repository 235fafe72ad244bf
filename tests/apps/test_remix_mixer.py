"""What the stem mixer view asks of remix: per-stem gain, mute, solo and pan, with a report of what took effect.

Solo follows a mixing desk: any solo silences the stems not soloed, and mute wins over solo.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import soundfile as sf

from echotune_mcp.music.remix import RemixSpec, mix_report, mix_stems, silenced

SR = 22_050


def tone(freq: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)[:, None]


def test_solo_and_mute_rules():
    names = ["drums", "bass", "keys"]
    assert silenced(names, RemixSpec()) == {}
    assert silenced(names, RemixSpec(solo={"bass"})) == {"drums": "not soloed", "keys": "not soloed"}
    assert silenced(names, RemixSpec(solo={"bass", "keys"}, mute={"keys"})) == {"drums": "not soloed",
                                                                               "keys": "muted"}
    report = mix_report(names, RemixSpec(solo={"bass", "keys"}, mute={"keys"}, gains_db={"drums": -3, "bass": 2},
                                         pan={"keys": 0.5}))
    assert report["playing"] == ["bass"]
    assert report["gains_db"] == {"bass": 2} and report["pan"] == {}
    assert report["ignored"] == ["gains_db.drums (not soloed)", "pan.keys (muted)", "solo.keys (muted: mute wins)"]


def test_mix_applies_solo_gain_and_pan():
    stems = {"a": tone(220), "b": tone(330)}
    only_a = mix_stems(stems, RemixSpec(solo={"a"}))
    assert np.allclose(only_a, np.repeat(stems["a"], 2, axis=1), atol=1e-6)
    hard_left = mix_stems(stems, RemixSpec(solo={"a"}, pan={"a": -1.0}, gains_db={"a": -6.0}))
    assert np.abs(hard_left[:, 1]).max() < 1e-6
    assert np.abs(hard_left[:, 0]).max() == pytest.approx(0.3 * 10 ** (-6 / 20), rel=1e-3)


async def _run(client, args: dict) -> dict:
    result = await client.call_tool("remix", {**args, "wait_seconds": 25})
    assert not result.is_error, result.content
    data = result.structured_content
    while data["status"] in ("queued", "running"):
        data = (await client.call_tool("get_job", {"job_id": data["job_id"], "wait_seconds": 25})).structured_content
    assert data["status"] == "succeeded", data
    return data["result"]


async def _audio(client, art_id: str) -> np.ndarray:
    res = await client.read_resource(f"echotune://artifacts/{art_id}/content")
    y, _ = sf.read(io.BytesIO(base64.b64decode(res.contents[0].blob)), dtype="float32", always_2d=True)
    return y


async def test_remix_tool_solo_and_pan_through_mcp(make_client, settings):
    root = settings.allowed_roots[0]
    paths = {}
    for name, freq in (("drums", 110), ("bass", 220), ("keys", 440)):
        paths[name] = str(root / f"{name}.wav")
        sf.write(paths[name], tone(freq), SR, subtype="FLOAT")
    async with make_client(toolsets=("jobs", "artifacts", "audio")) as (client, _app):
        out = await _run(client, {"stems": paths, "solo": ["keys", "bass"], "mute": ["bass"],
                                  "gains_db": {"drums": 6}, "pan": {"keys": -1.0}, "normalize": "none"})
        assert out["mix"]["playing"] == ["keys"]
        assert out["mix"]["silenced"] == {"drums": "not soloed", "bass": "muted"}
        assert out["mix"]["ignored"] == ["gains_db.drums (not soloed)", "solo.bass (muted: mute wins)"]
        y = await _audio(client, out["mix_artifact_id"])
        assert np.abs(y[:, 1]).max() < 1e-4  # keys panned hard left; nothing else plays
        spectrum = np.abs(np.fft.rfft(y[:, 0]))
        assert abs(np.argmax(spectrum) * SR / len(y) - 440) < 2

        for args, needle in (({"solo": ["piano"]}, "'piano'"), ({"solo": ["bass"], "mute": ["bass"]}, "mute wins")):
            res = await client.call_tool("remix", {"stems": paths, **args})
            assert res.is_error
            text = " ".join(b.text for b in res.content if b.type == "text")
            assert "solo" in text and needle in text, text
