"""Every artifact any tool makes carries complete provenance (issue #6), enforced by walking the tools.

A new tool that writes artifacts must be added to ``SCENARIOS``: the first test fails until it is, so
provenance can't silently be forgotten.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import soundfile as sf

from echotune_mcp.licensing import assert_provenance_complete

# Mutating tools that never create artifacts (they change records, jobs or provider state).
NO_ARTIFACTS = {"cancel_job", "delete_artifact", "set_license", "connect_provider", "disconnect_provider",
                "create_playlist", "add_tracks", "remove_tracks", "reorder_playlist", "dedupe_playlist",
                "transfer_playlist", "curate_playlist", "restore_playlist",
                "import_listening_history", "sync_listening_history", "fit_recommender", "share_taste_for_segments",
                "delete_my_data"}


def _wav(seconds=3.0, sr=22050) -> bytes:
    t = np.arange(int(seconds * sr)) / sr
    tone = 0.2 * np.sin(2 * np.pi * 220 * t) + 0.05 * np.random.default_rng(0).standard_normal(len(t))
    buf = io.BytesIO()
    sf.write(buf, np.stack([tone, tone], 1).astype(np.float32), sr, format="WAV")
    return buf.getvalue()


async def _finish(client, result):
    assert not result.is_error, result.content[0].text
    data = result.structured_content
    while data.get("status") in ("queued", "running"):
        data = (await client.call_tool("get_job", {"job_id": data["job_id"], "wait_seconds": 25})).structured_content
    assert data.get("status", "succeeded") == "succeeded", data
    return data


async def _scenario(client, tools: set[str]) -> set[str]:
    """Call every artifact-making tool once; return the names it exercised."""
    done = set()
    up = await _finish(client, await client.call_tool("import_audio", {"data_base64": base64.b64encode(_wav()).decode(),
                                                                       "filename": "take.wav"}))
    done.add("import_audio")
    gen = await _finish(client, await client.call_tool("generate_music", {"prompt": "calm jazz trio", "duration_s": 4,
                                                                          "seed": 3, "wait_seconds": 25}))
    done.add("generate_music")
    mix = gen["result"]["mix_artifact_id"]
    await _finish(client, await client.call_tool("regenerate_stem", {"artifact": mix, "stem": "bass",
                                                                     "instruction": "octave lower", "wait_seconds": 25}))
    done.add("regenerate_stem")
    await _finish(client, await client.call_tool("add_stem", {"artifact": mix, "instrument": "vibraphone",
                                                              "wait_seconds": 25}))
    done.add("add_stem")
    upload = up["artifact_id"]
    if "separate_stems" in tools:
        sep = await _finish(client, await client.call_tool("separate_stems", {"audio": upload, "model": "dsp",
                                                                              "wait_seconds": 25}))
        done.add("separate_stems")
        assert all(a["parents"] == [upload] for a in sep["artifacts"] if a["kind"] == "stem")
    if "remix" in tools:
        await _finish(client, await client.call_tool("remix", {"artifact": mix, "pitch_shift_semitones": 2,
                                                               "gains_db": {"drums": -3}, "wait_seconds": 25}))
        done.add("remix")
    if "export_to_daw" in tools:
        await _finish(client, await client.call_tool("export_to_daw", {"source": mix, "format": "stems",
                                                                       "wait_seconds": 25}))
        done.add("export_to_daw")
    if "analyze_audio" in tools:
        await _finish(client, await client.call_tool("analyze_audio", {"audio": upload}))
        done.add("analyze_audio")
    if "transcribe_to_midi" in tools:  # a pitched part (basic-pitch weights) and drums (no weights)
        stems = [a["artifact_id"] for a in gen["artifacts"] if a["kind"] == "stem"]
        for args in ({"audio": upload, "stem": "bass"}, {"audio": stems[0], "mode": "drums"}):
            await _finish(client, await client.call_tool("transcribe_to_midi", {**args, "wait_seconds": 25}))
        done.add("transcribe_to_midi")
    if "export_my_data" in tools:  # last, so the zip holds everything above
        await _finish(client, await client.call_tool("export_my_data", {"wait_seconds": 25}))
        done.add("export_my_data")
    return done


async def test_every_artifact_tool_is_walked_and_every_artifact_has_provenance(make_client):
    async with make_client() as (client, app):
        listed = {t.name: t for t in (await client.list_tools()).tools}
        makers = {n for n, t in listed.items() if not t.annotations.read_only_hint} - NO_ARTIFACTS
        makers |= {n for n in ("analyze_audio",) if n in listed}  # read-only, but caches its analysis as an artifact
        walked = await _scenario(client, set(listed))
        assert makers <= walked, f"tools that make artifacts but are not walked here: {sorted(makers - walked)}"
        records, cursor = [], None
        while True:
            page, cursor = await app.storage.artifacts.find("local", limit=100, cursor=cursor)
            records += page
            if cursor is None:
                break
        kinds = {r.kind for r in records}
        assert {"upload", "audio", "stem", "preview", "midi", "arrangement", "image", "manifest"} <= kinds, kinds
        for record in records:
            assert_provenance_complete(record)
