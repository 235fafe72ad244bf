"""export_to_daw through a real MCP client: DAWproject (XSD-valid), REAPER (parsed back with rpp) and stems
(equal lengths, sample-exact from time 0) for a composer piece, a separation and an audio-only piece."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile as sf

from tests.conftest import shared_path

TOOLSETS = ("jobs", "artifacts", "compose", "audio", "licensing", "export")
FORMATS = ("dawproject", "reaper", "stems")


def text_of(result) -> str:
    return " ".join(b.text for b in result.content if getattr(b, "type", "") == "text")


async def _run(client, tool, args):
    result = await client.call_tool(tool, {**args, "wait_seconds": 25})
    assert not result.is_error, text_of(result)
    data = result.structured_content
    while data["status"] in ("queued", "running"):
        data = (await client.call_tool("get_job", {"job_id": data["job_id"], "wait_seconds": 25})).structured_content
    assert data["status"] == "succeeded", data
    return data


async def _bytes(client, art_id: str) -> bytes:
    res = await client.read_resource(f"echotune://artifacts/{art_id}/content")
    return base64.b64decode(res.contents[0].blob)


def _wav(data: bytes) -> tuple[np.ndarray, int]:
    y, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return y, sr


async def _export(client, source: str, fmt: str) -> tuple[dict, zipfile.ZipFile]:
    job = await _run(client, "export_to_daw", {"source": source, "format": fmt})
    res = job["result"]
    arts = [a for a in job["artifacts"] if a["kind"] == "daw_export"]
    assert len(arts) == 1 and arts[0]["artifact_id"] == res["artifact_id"]
    data = await _bytes(client, res["artifact_id"])
    assert len(data) == res["size"]
    return res, zipfile.ZipFile(io.BytesIO(data))


# -- format checks ------------------------------------------------------------------------------------------
def _schema(name: str):
    etree = pytest.importorskip("lxml.etree")
    return etree.XMLSchema(etree.parse(str(shared_path("specs", "dawproject", name))))


def check_dawproject(zf: zipfile.ZipFile, res: dict) -> dict:
    """Valid against both XSDs; returns what the project says (tracks, clips, notes, tempo, markers)."""
    from lxml import etree

    names = set(zf.namelist())
    assert {"project.xml", "metadata.xml", "README.txt"} <= names
    project = etree.fromstring(zf.read("project.xml"))
    meta = etree.fromstring(zf.read("metadata.xml"))
    schema = _schema("Project.xsd")
    assert schema.validate(project), schema.error_log
    meta_schema = _schema("MetaData.xsd")
    assert meta_schema.validate(meta), meta_schema.error_log
    assert project.get("version") == "1.0"
    tempo = float(project.find("Transport/Tempo").get("value"))
    assert tempo == pytest.approx(res["bpm"], abs=1e-6)
    ts = project.find("Transport/TimeSignature")
    assert f"{ts.get('numerator')}/{ts.get('denominator')}" == res["time_signature"]
    tracks = {t.get("id"): t for t in project.iterfind("Structure/Track")}
    master = [t for t in tracks.values() if t.find("Channel").get("role") == "master"]
    assert len(master) == 1
    out = {"audio": {}, "notes": {}, "markers": []}
    for lane in project.iterfind("Arrangement/Lanes/Lanes"):
        track = tracks[lane.get("track")]
        assert track.find("Channel").get("destination") == master[0].find("Channel").get("id")
        clip = lane.find("Clips/Clip")
        assert float(clip.get("time")) == 0.0
        if track.get("contentType") == "audio":
            audio = clip.find("Warps/Audio")
            path = audio.find("File").get("path")
            assert path in names, path  # embedded in the container
            warps = clip.findall("Warps/Warp")
            assert float(warps[-1].get("contentTime")) == pytest.approx(float(audio.get("duration")))
            assert float(warps[-1].get("time")) == pytest.approx(float(audio.get("duration")) * tempo / 60)
            out["audio"][track.get("name")] = path
        else:
            assert track.get("contentType") == "notes"
            assert track.find("Channel/Mute").get("value") == "true"
            out["notes"][track.get("name")] = [(float(n.get("time")), float(n.get("duration")), int(n.get("key")))
                                               for n in clip.iterfind("Notes/Note")]
    out["markers"] = [(m.get("name"), float(m.get("time"))) for m in project.iterfind("Arrangement/Markers/Marker")]
    return out


def check_reaper(zf: zipfile.ZipFile, res: dict) -> dict:
    """Parsed back with rpp: tempo, markers, tracks and items whose files are in the archive."""
    import rpp

    names = set(zf.namelist())
    rpp_name = res["project_file"]
    assert rpp_name.endswith(".rpp") and rpp_name in names and "README.txt" in names
    root = rpp.loads(zf.read(rpp_name).decode())
    assert root.tag == "REAPER_PROJECT"
    tempo = root.find("TEMPO")
    assert float(tempo[1]) == pytest.approx(res["bpm"], abs=1e-6)
    assert f"{tempo[2]}/{tempo[3]}" == res["time_signature"]
    out = {"audio": {}, "midi": {}, "markers": [(m[3], float(m[2])) for m in root.findall("MARKER")]}
    for track in root.findall("TRACK"):
        name = track.find("NAME")[1]
        items = track.findall("ITEM")
        assert len(items) == 1
        item = items[0]
        assert float(item.find("POSITION")[1]) == 0.0
        assert float(item.find("LENGTH")[1]) == pytest.approx(res["duration_s"], abs=1e-6)
        source = item.find("SOURCE")
        if source.attrib[0] == "WAVE":
            path = source.find("FILE")[1]
            assert path in names and not path.startswith("/")  # relative to the project
            out["audio"][name] = path
        else:
            assert source.attrib[0] == "MIDI" and track.find("MUTESOLO")[1] == "1"
            out["midi"][name] = [e for e in source.findall("E")]
    return out


def check_stems(zf: zipfile.ZipFile, res: dict) -> dict[str, np.ndarray]:
    """Equal lengths and rates, from time 0; the map and the README describe every file and its licence."""
    names = set(zf.namelist())
    assert {"tempo_map.json", "README.txt"} <= names
    doc = json.loads(zf.read("tempo_map.json"))
    readme = zf.read("README.txt").decode()
    assert doc["tempo"]["bpm"] == pytest.approx(res["bpm"]) and doc["tempo"]["source"]
    audio = {}
    for f in doc["files"]:
        y, sr = _wav(zf.read(f["file"]))
        assert sr == doc["sample_rate"] and len(y) == doc["length_frames"] == f["frames"]
        audio[f["track"]] = y
        assert f["file"] in readme
    assert readme.count("licence: ") >= len(doc["files"])
    return audio


# -- composer piece -----------------------------------------------------------------------------------------
async def test_composer_piece_exports_in_every_format(make_client):
    from echotune_mcp.licensing import assert_provenance_complete
    from echotune_mcp.music.composer import Arrangement

    async with make_client(toolsets=TOOLSETS) as (client, app):
        gen = (await _run(client, "generate_music", {"prompt": "funk with slap bass and piano, 110 bpm in E minor",
                                                      "duration_s": 8, "seed": 11}))["result"]
        mix = gen["mix_artifact_id"]
        arrangement = Arrangement.from_json((await _bytes(client, gen["arrangement_artifact_id"])).decode())
        stems = {name: _wav(await _bytes(client, art))[0] for name, art in gen["stems"].items()}
        sections = [(s.name, s.start_s * arrangement.bpm / 60) for s in arrangement.sections]
        assert sections

        res, zf = await _export(client, mix, "dawproject")
        assert res["kind"] == "composer" and res["bpm"] == pytest.approx(arrangement.bpm)
        assert res["bpm_source"] == "the composer's arrangement" and res["key"] == arrangement.key.name
        proj = check_dawproject(zf, res)
        assert sorted(proj["audio"]) == sorted(gen["stems"])
        assert sorted(proj["notes"]) == sorted(f"{n} (MIDI)" for n in gen["stems"])
        for t in arrangement.tracks:  # every note, at its time in beats
            got = proj["notes"][f"{t.name} (MIDI)"]
            assert len(got) == len(t.notes)
            assert sorted(g[0] for g in got) == pytest.approx(sorted(n[0] * arrangement.bpm / 60 for n in t.notes),
                                                              abs=1e-5)
        assert [m[0] for m in proj["markers"]] == [s[0] for s in sections]
        assert [m[1] for m in proj["markers"]] == pytest.approx([s[1] for s in sections], abs=1e-5)
        export_art = await app.artifacts.get("local", res["artifact_id"])
        assert set(export_art.parents) >= {mix, *gen["stems"].values(), gen["arrangement_artifact_id"]}

        res, zf = await _export(client, mix, "reaper")
        rp = check_reaper(zf, res)
        assert sorted(rp["audio"]) == sorted(gen["stems"])
        for t in arrangement.tracks:
            assert len(rp["midi"][f"{t.name} (MIDI)"]) == 2 * len(t.notes) + 1  # on + off each, all-notes-off
        assert [m[0] for m in rp["markers"]] == [s[0] for s in sections]
        assert [m[1] for m in rp["markers"]] == pytest.approx([s.start_s for s in arrangement.sections], abs=1e-6)

        res, zf = await _export(client, mix, "stems")
        audio = check_stems(zf, res)
        for name, y in stems.items():  # the stems' own samples, from time 0, not one sample off
            got = audio[name][: len(y)]
            assert np.array_equal(got, y), name
            assert not np.any(audio[name][len(y):])
        for t in arrangement.tracks:
            mid = mido.MidiFile(file=io.BytesIO(zf.read(f"midi/{t.name}.mid")))
            ons = [m for tr in mid.tracks for m in tr if m.type == "note_on" and m.velocity > 0]
            assert len(ons) == len(t.notes)
        doc = json.loads(zf.read("tempo_map.json"))
        assert [m["name"] for m in doc["markers"]] == [s[0] for s in sections]
        assert doc["time_signature"]["numerator"] == arrangement.time_signature[0]

        # the licence is traced through the export's lineage like any artifact's
        usage = (await client.call_tool("check_usage", {"artifact": res["artifact_id"],
                                                        "use": "commercial_release"})).structured_content
        assert usage["lineage"]["artifacts_checked"] > len(gen["stems"])
        assert res["license"] is None and "no licence chosen" in res["license_reason"]
        assert res["uses"]["commercial_release"] == usage["decision"]
        assert_provenance_complete(await app.artifacts.get("local", res["artifact_id"]))

        # licensed parts: the export carries the most restrictive of their licences
        for name, art in gen["stems"].items():
            lic = "CC-BY-NC-4.0" if name == list(gen["stems"])[-1] else "CC-BY-4.0"
            done = await client.call_tool("set_license", {"artifact": art, "license": lic})
            assert not done.is_error, text_of(done)
        res, zf = await _export(client, mix, "stems")
        assert res["license"] == "CC-BY-NC-4.0", res["license_reason"]
        assert (await app.artifacts.get("local", res["artifact_id"])).license == "CC-BY-NC-4.0"
        assert "licence: CC-BY-NC-4.0" in zf.read("README.txt").decode()

        # a regenerated stem's job exports the new take with the unchanged stems
        first, *others = list(gen["stems"])
        regen = await _run(client, "regenerate_stem", {"artifact": mix, "stem": first, "seed": 4})
        res, zf = await _export(client, regen["job_id"], "stems")
        assert res["source"] == regen["result"]["mix_artifact_id"] and res["kind"] == "composer"
        by = {t["track"]: t["source_artifact_id"] for t in res["tracks"]}
        assert by == regen["result"]["stems"] and by[first] != gen["stems"][first]
        assert all(by[n] == gen["stems"][n] for n in others)

        # the meter is the arrangement's: a 6/8 piece is 6/8 in every format, its bars three quarter notes long
        doc = json.loads(arrangement.to_json())
        doc["time_signature"] = [6, 8]
        mix_rec = await app.artifacts.get("local", mix)
        arr68 = await app.artifacts.create(owner="local", data=json.dumps(doc).encode(), kind="arrangement",
                                           media_type="application/json", name="arrangement.json",
                                           provenance=mix_rec.provenance)
        mix68 = await app.artifacts.create(owner="local", data=await _bytes(client, mix), kind="audio",
                                           media_type="audio/wav", name="mix.wav", parents=[arr68.id],
                                           meta={**mix_rec.meta, "arrangement_id": arr68.id},
                                           provenance=mix_rec.provenance)
        for fmt in FORMATS:
            res, zf = await _export(client, mix68.id, fmt)
            assert res["time_signature"] == "6/8"
            {"dawproject": check_dawproject, "reaper": check_reaper, "stems": check_stems}[fmt](zf, res)
            if fmt == "stems":
                marks = json.loads(zf.read("tempo_map.json"))["markers"]
                assert all(m["bar"] == pytest.approx(m["beat"] / 3 + 1) for m in marks)
                mid = mido.MidiFile(file=io.BytesIO(zf.read(f"midi/{arrangement.tracks[0].name}.mid")))
                sig = next(m for tr in mid.tracks for m in tr if m.type == "time_signature")
                assert (sig.numerator, sig.denominator) == (6, 8)


# -- separation ---------------------------------------------------------------------------------------------
def _synthetic_mix(seconds: float = 4.0, sr: int = 22050) -> bytes:
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(3)
    kick = np.zeros_like(t)
    for beat in np.arange(0, seconds, 0.5):  # 120 bpm
        i = int(beat * sr)
        kick[i:i + 2000] += np.exp(-np.arange(min(2000, len(t) - i)) / 300) * np.sin(2 * np.pi * 60 * t[:min(2000, len(t) - i)])
    y = 0.3 * kick + 0.15 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 110 * t) + 0.02 * rng.standard_normal(len(t))
    buf = io.BytesIO()
    sf.write(buf, np.stack([y, 0.9 * y], 1).astype(np.float32), sr, format="WAV", subtype="PCM_24")
    return buf.getvalue()


async def test_separation_exports_its_stems_aligned(make_client):
    async with make_client(toolsets=TOOLSETS) as (client, app):
        mix_bytes = _synthetic_mix()
        up = (await client.call_tool("import_audio", {"data_base64": base64.b64encode(mix_bytes).decode(),
                                                      "filename": "mix.wav"})).structured_content
        sep = await _run(client, "separate_stems", {"audio": up["artifact_id"], "model": "dsp"})
        stem_set = sep["result"]["stem_set_artifact_id"]
        x, sr = _wav(mix_bytes)

        res, zf = await _export(client, sep["job_id"], "stems")  # a job id is accepted too
        assert res["source"] == stem_set and res["kind"] == "separation"
        assert "estimated from the audio" in res["bpm_source"] and res["markers"] == []
        audio = check_stems(zf, res)
        assert sorted(audio) == sorted(sep["result"]["stems"])
        total = sum(audio.values())
        assert total.shape == x.shape and res["sample_rate"] == sr
        err = 10 * np.log10(np.sum((total - x) ** 2) / np.sum(x ** 2))
        assert err < -60, err  # the dsp stems add back up to the input, so the exported ones do too
        assert not any(name.startswith("midi/") for name in zf.namelist())

        res, zf = await _export(client, stem_set, "dawproject")
        proj = check_dawproject(zf, res)
        assert sorted(proj["audio"]) == sorted(sep["result"]["stems"]) and proj["notes"] == {}
        assert proj["markers"] == []
        export_art = await app.artifacts.get("local", res["artifact_id"])
        assert up["artifact_id"] in export_art.parents  # the separated input is part of the lineage
        usage = (await client.call_tool("check_usage", {"artifact": res["artifact_id"],
                                                        "use": "commercial_release"})).structured_content
        assert usage["decision"] == "not_allowed"  # an upload of unknown rights binds the export
        assert res["uses"]["commercial_release"] == "not_allowed"

        res, zf = await _export(client, stem_set, "reaper")
        rp = check_reaper(zf, res)
        assert sorted(rp["audio"]) == sorted(sep["result"]["stems"]) and rp["midi"] == {}


async def test_stems_of_different_rates_and_lengths_are_resampled_and_padded(make_client):
    """Same rate (the highest, via soxr) and the same length (the longest) for all, from time 0."""
    from echotune_mcp.music.audio_io import encode_audio

    async with make_client(toolsets=TOOLSETS) as (client, app):
        rng = np.random.default_rng(0)
        a = (0.1 * rng.standard_normal((44100 * 2, 2))).astype(np.float32)
        b = (0.1 * rng.standard_normal((int(22050 * 2.5), 1))).astype(np.float32)
        prov = {"tool": "import_audio", "source": {"type": "upload", "rights": "unknown"}}
        ra = await app.artifacts.create(owner="local", data=encode_audio(a, 44100, "wav"), kind="stem",
                                        media_type="audio/wav", name="stem-a.wav", provenance=prov)
        rb = await app.artifacts.create(owner="local", data=encode_audio(b, 22050, "flac"), kind="stem",
                                        media_type="audio/flac", name="stem-b.flac", provenance=prov)
        listing = {"type": "stem-set", "stems": {"a": ra.id, "b": rb.id}, "model": "test"}
        ss = await app.artifacts.create(owner="local", data=json.dumps(listing).encode(), kind="json",
                                        media_type="application/json", name="stem-set.json",
                                        parents=[ra.id, rb.id], meta=listing, provenance=prov)
        res, zf = await _export(client, ss.id, "stems")
        audio = check_stems(zf, res)
        assert res["sample_rate"] == 44100 and res["length_frames"] == int(44100 * 2.5)
        by = {t["track"]: t for t in res["tracks"]}
        assert by["b"]["resampled"] and by["b"]["source_sample_rate"] == 22050 and not by["a"]["resampled"]
        assert by["a"]["padded_frames"] == int(44100 * 0.5)
        ya, _ = _wav(encode_audio(a, 44100, "wav"))
        assert np.array_equal(audio["a"][: len(a)], ya) and not np.any(audio["a"][len(a):])
        assert audio["b"].shape == (int(44100 * 2.5), 1)


# -- audio only ---------------------------------------------------------------------------------------------
async def test_audio_only_piece_is_one_track_in_every_format(make_client):
    async with make_client(toolsets=TOOLSETS) as (client, _):
        data = _synthetic_mix(3.0, 44100)
        up = (await client.call_tool("import_audio", {"data_base64": base64.b64encode(data).decode(),
                                                      "filename": "song.wav"})).structured_content
        x, _ = _wav(data)
        for fmt in FORMATS:
            res, zf = await _export(client, up["artifact_id"], fmt)
            assert res["kind"] == "audio" and len(res["tracks"]) == 1 and res["markers"] == []
            assert res["meter_source"].startswith("assumed") and res["bpm"] > 0
            if fmt == "dawproject":
                proj = check_dawproject(zf, res)
                assert len(proj["audio"]) == 1 and proj["notes"] == {}
            elif fmt == "reaper":
                rp = check_reaper(zf, res)
                assert len(rp["audio"]) == 1 and rp["midi"] == {}
            else:
                (y,) = check_stems(zf, res).values()
                assert np.array_equal(y, x)


# -- refusals, ownership, cancellation -----------------------------------------------------------------------
async def test_bad_format_and_someone_elses_source_are_refused(make_client, monkeypatch):
    async with make_client(toolsets=TOOLSETS) as (client, app):
        up = (await client.call_tool("import_audio", {"data_base64": base64.b64encode(_synthetic_mix(1.0)).decode(),
                                                      "filename": "a.wav"})).structured_content
        bad = await client.call_tool("export_to_daw", {"source": up["artifact_id"], "format": "logic"})
        assert bad.is_error
        msg = text_of(bad)
        assert "format" in msg and all(f in msg for f in FORMATS), msg
        midi_like = await client.call_tool("export_to_daw", {"source": "job_nope", "format": "stems"})
        assert midi_like.is_error and "job_nope" in text_of(midi_like)

        monkeypatch.setattr("echotune_mcp.toolsets.export.current_principal", lambda: "user:bob")
        for ref in (up["artifact_id"], f"echotune://artifacts/{up['artifact_id']}", up["job_id"] or "job_x"):
            other = await client.call_tool("export_to_daw", {"source": ref, "format": "stems"})
            assert other.is_error and "not found" in text_of(other), text_of(other)
        recs, _ = await app.artifacts.list("user:bob")
        assert recs == []
        monkeypatch.setattr("echotune_mcp.toolsets.export.current_principal", lambda: "local")

        sep = await _run(client, "separate_stems", {"audio": up["artifact_id"], "model": "dsp"})
        await app.artifacts.delete("local", up["artifact_id"])  # the separated input may go: the stems stay whole
        res, _ = await _export(client, sep["job_id"], "stems")
        assert any(up["artifact_id"] in n and "deleted" in n for n in res["notes"]), res["notes"]
        usage = (await client.call_tool("check_usage", {"artifact": res["artifact_id"],
                                                        "use": "commercial_release"})).structured_content
        assert usage["decision"] == "not_allowed"  # the deleted upload's tombstone still binds the stems
        gone = sep["result"]["stems"]["bass"]
        await app.artifacts.delete("local", gone)
        res = await client.call_tool("export_to_daw", {"source": sep["job_id"], "format": "stems"})
        assert res.is_error and "'bass'" in text_of(res) and "deleted" in text_of(res), text_of(res)


async def test_cancelled_export_leaves_no_artifact_and_no_temp_file(make_client, monkeypatch):
    from echotune_mcp.export import archive

    async with make_client(toolsets=TOOLSETS) as (client, app):
        up = (await client.call_tool("import_audio", {"data_base64": base64.b64encode(_synthetic_mix(1.0)).decode(),
                                                      "filename": "a.wav"})).structured_content
        sep = await _run(client, "separate_stems", {"audio": up["artifact_id"], "model": "dsp"})
        real = archive.aligned_wav
        calls = []

        def cancel_after_first(*args):
            out = real(*args)
            calls.append(1)
            if len(calls) == 1:  # the job is cancelled while its first track is being written
                job = next(iter(app.jobs._live.values()))
                job.cancel.set()
            return out

        monkeypatch.setattr(archive, "aligned_wav", cancel_after_first)
        result = await client.call_tool("export_to_daw", {"source": sep["result"]["stem_set_artifact_id"],
                                                          "format": "dawproject", "wait_seconds": 25})
        data = result.structured_content
        while data["status"] in ("queued", "running"):
            data = (await client.call_tool("get_job", {"job_id": data["job_id"], "wait_seconds": 5})).structured_content
        assert data["status"] == "cancelled" and data["artifacts"] == [] and len(calls) == 1
        recs, _ = await app.artifacts.list("local", kind="daw_export")
        assert recs == []
        tmp = Path(app.settings.data_dir) / "tmp"
        assert not list(tmp.glob("daw-export-*")), list(tmp.iterdir())

        # what a killed process left behind is swept by the next export; a fresh one (a neighbour's) is kept
        import os
        import time

        stale, fresh = tmp / "daw-export-dead.zip", tmp / "daw-export-live.zip"
        for f in (stale, fresh):
            f.write_bytes(b"partial")
        os.utime(stale, (time.time() - 7200, time.time() - 7200))
        monkeypatch.setattr(archive, "aligned_wav", real)
        await _export(client, sep["result"]["stem_set_artifact_id"], "stems")
        assert not stale.exists() and fresh.exists()


async def test_hostile_sources_are_answered_with_a_clear_error(make_client):
    from tests.hostile.test_fuzz_tools import HOSTILE_STRINGS

    async with make_client(toolsets=TOOLSETS) as (client, _):
        up = (await client.call_tool("import_audio", {"data_base64": base64.b64encode(_synthetic_mix(1.0)).decode(),
                                                      "filename": "a.wav"})).structured_content
        analysis = await _run(client, "analyze_audio", {"audio": up["artifact_id"]})
        res = await client.call_tool("export_to_daw", {"source": analysis["job_id"], "format": "stems"})
        assert res.is_error and "analyze_audio job" in text_of(res)  # an analysis makes nothing to export
        arr = await client.call_tool("export_to_daw", {"source": f"echotune://artifacts/{up['artifact_id']}/x",
                                                       "format": "stems"})
        assert not arr.is_error  # a URI with a suffix names the same artifact, as everywhere else
        for ref in [s for s in HOSTILE_STRINGS if 1 <= len(s) <= 256] + ["job_" + "x" * 20, "job_\x00"]:
            res = await client.call_tool("export_to_daw", {"source": ref, "format": "reaper"})
            text = text_of(res)
            assert res.is_error, (ref, text)
            assert "not found" in text or "source" in text, (ref, text)


async def test_musicgen_piece_exports_as_audio_only_and_keeps_its_weights_licence(make_client):
    """A MusicGen mix (recorded as generate_music records one; no weights are needed to export it) is one audio
    track; the non-commercial weights licence binds the export through its lineage."""
    from echotune_mcp.music.audio_io import encode_audio

    async with make_client(toolsets=TOOLSETS) as (client, app):
        y, sr = _wav(_synthetic_mix(3.0, 32000))
        prov = {"tool": "generate_music", "backend": "musicgen", "prompt": "lofi beat with rain", "seed": 5,
                "model": {"model_id": "musicgen-small", "backend": "musicgen", "weights_license": "CC-BY-NC-4.0",
                          "weights_revision": "test"}, "parameters": {"prompt": "lofi beat with rain"}}
        rec = await app.artifacts.create(owner="local", data=encode_audio(y, sr, "wav"), kind="audio",
                                         media_type="audio/wav", name="mix.wav", provenance=prov,
                                         meta={"sample_rate": sr, "params": {"prompt": "lofi beat with rain"}})
        res, zf = await _export(client, rec.id, "dawproject")
        proj = check_dawproject(zf, res)
        assert res["kind"] == "audio" and list(proj["audio"]) == ["mix"] and res["sample_rate"] == 32000
        assert res["title"] == "lofi beat with rain" and res["file_name"] == "lofi-beat-with-rain.dawproject"
        assert res["uses"]["commercial_release"] == "not_allowed"
        assert "CC-BY-4.0" not in res["permitted_licenses"]
        assert "model weights licence: CC-BY-NC-4.0" in zf.read("README.txt").decode()
        usage = (await client.call_tool("check_usage", {"artifact": res["artifact_id"],
                                                        "use": "commercial_release"})).structured_content
        assert usage["decision"] == "not_allowed"


def test_export_is_priced_as_a_job():
    """It decodes, resamples and writes every stem: a job's cost for the rate limits, not a cheap write."""
    from echotune_mcp.auth.policy import tool_policy
    from mcp_types import ToolAnnotations

    p = tool_policy("export_to_daw", ToolAnnotations(read_only_hint=False, destructive_hint=False))
    assert p.cost_class == "job" and p.scope == "echotune:write" and not p.step_up
