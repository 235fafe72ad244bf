"""Write one export archive: sample-aligned audio for every track, then the format's project files.

Every format shares the audio step, so a DAWproject, a REAPER project and a stems zip of one piece hold
the same WAV files: one rate for all (the highest among the tracks; others are resampled with soxr), all
starting at time 0 and padded with silence to the longest, 24-bit PCM like our own stems (a 24-bit stem
is copied sample for sample). The archive is written to a private temp file (0600 in a 0700 folder) and
only handed back whole; the caller turns it into an artifact, so a failed or cancelled export leaves no
half-written artifact. Tracks are processed one at a time, and cancellation is checked between them.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .session import Session, Track

if TYPE_CHECKING:
    from ..app import App
    from ..jobs import JobContext

MIN_MEASURE_S = 2.0  # shorter audio gets the default tempo and no key, said so


@dataclass
class AudioFile:
    track: Track
    path: str  # inside the archive, '/'-separated
    sample_rate: int
    channels: int
    frames: int  # equal for every file of one archive
    source_sample_rate: int
    source_frames: int
    sha256: str

    @property
    def duration_s(self) -> float:
        return self.frames / float(self.sample_rate)

    def describe(self) -> dict[str, Any]:
        return {"track": self.track.name, "file": self.path, "role": self.track.role,
                "source_artifact_id": self.track.record.id, "sample_rate": self.sample_rate,
                "channels": self.channels, "frames": self.frames, "source_sample_rate": self.source_sample_rate,
                "source_frames": self.source_frames,
                "resampled": self.source_sample_rate != self.sample_rate,
                "padded_frames": max(0, self.frames - round(self.source_frames * self.sample_rate
                                                           / self.source_sample_rate)),
                "midi": self.track.part is not None, "sha256": self.sha256}


def probe(data: bytes) -> tuple[int, int, int]:
    """(sample rate, frames, channels) from the header alone."""
    import soundfile as sf

    info = sf.info(io.BytesIO(data))
    return int(info.samplerate), int(info.frames), int(info.channels)


def aligned_wav(data: bytes, target_sr: int, target_frames: int, tags: dict[str, str]) -> tuple[bytes, np.ndarray, int]:
    """The audio as a WAV at ``target_sr`` exactly ``target_frames`` long from time 0; also its mono
    downmix (for tempo/key estimation) and its channel count. 24-bit PCM (``encode_audio``'s WAV), the
    subtype of our own stems, so theirs are copied sample for sample."""
    import soundfile as sf

    from ..music.audio_io import encode_audio, resample

    y, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    y = resample(y, int(sr), target_sr)
    if y.shape[0] < target_frames:
        y = np.pad(y, ((0, target_frames - y.shape[0]), (0, 0)))
    y = np.ascontiguousarray(y[:target_frames])
    wav = encode_audio(y, target_sr, "wav", tags)
    return wav, y.mean(axis=1), y.shape[1]


TEMP_PREFIX = "daw-export-"
STALE_TEMP_S = 3600.0  # an export writes its file continuously; one untouched this long was left by a crash


def _private_temp(app: App, suffix: str) -> Path:
    """A new private temp file; archives a killed process left behind (untouched for an hour) are removed."""
    from ..private_files import private_dir

    tmp_dir = private_dir(app.settings.data_dir / "tmp", ours=True)
    now = time.time()
    for old in tmp_dir.glob(f"{TEMP_PREFIX}*"):
        try:
            if now - old.stat().st_mtime > STALE_TEMP_S:
                old.unlink()
        except OSError:  # another process removed it first
            pass
    fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=suffix, dir=tmp_dir)
    os.close(fd)
    path = Path(name)
    os.chmod(path, 0o600)
    return path


Writer = Callable[[zipfile.ZipFile, Session, list[AudioFile], dict[str, Any]], dict[str, Any]]


async def build_archive(app: App, job: JobContext, session: Session, audio_dir: str, writer: Writer,
                        licences: dict[str, Any]) -> tuple[Path, list[AudioFile], dict[str, Any]]:
    """Write the archive to a private temp file; its path, the audio files and what the writer reported.

    The caller reads and removes the file. On any failure or cancellation the file is removed here.
    """
    import hashlib

    from ..licensing import file_tags

    started = time.monotonic()
    await job.progress(0.02, "reading the tracks")
    probes = []
    for t in session.tracks:
        data = await app.artifacts.read(t.record)
        probes.append(await job.run_in_thread(probe, data))
    target_sr = max(sr for sr, _, _ in probes)
    target_frames = max(-(-frames * target_sr // sr) for sr, frames, _ in probes)  # ceil: nothing is cut
    path = _private_temp(app, ".zip")
    files: list[AudioFile] = []
    mono_sum: np.ndarray | None = None
    try:
        zf = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True)
        try:
            for i, (t, (sr, frames, _)) in enumerate(zip(session.tracks, probes, strict=True)):
                await job.progress(0.05 + 0.75 * i / len(session.tracks), f"writing the audio of {t.name}")
                data = await app.artifacts.read(t.record)
                tags = file_tags(t.record.provenance or {}, t.record.license)
                wav, mono, channels = await job.run_in_thread(aligned_wav, data, target_sr, target_frames, tags)
                del data
                mono_sum = mono if mono_sum is None else mono_sum + mono
                arcname = f"{audio_dir}/{t.name}.wav"
                # WAV barely deflates: stored, so the archive is written (and opened by a DAW) at disk speed
                await job.run_in_thread(lambda a=arcname, w=wav: zf.writestr(a, w, compress_type=zipfile.ZIP_STORED))
                files.append(AudioFile(track=t, path=arcname, sample_rate=target_sr, channels=channels,
                                       frames=target_frames, source_sample_rate=sr, source_frames=frames,
                                       sha256=hashlib.sha256(wav).hexdigest()))
                del wav
            job.check_cancelled()
            if session.bpm is None and mono_sum is not None:
                await job.progress(0.82, "estimating tempo and key from the audio")
                await job.run_in_thread(estimate_timing, session, mono_sum, target_sr)
            mono_sum = None
            await job.progress(0.88, "writing the project")
            report = await job.run_in_thread(writer, zf, session, files, licences)
            job.check_cancelled()
        finally:
            zf.close()
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    report = {**report, "seconds": round(time.monotonic() - started, 3)}
    return path, files, report


def estimate_timing(session: Session, mono: np.ndarray, sr: int) -> None:
    """Tempo and key of audio we did not compose, measured (analysis.estimate_tempo/estimate_key); the
    meter is assumed 4/4. Each says where it came from."""
    import warnings

    from ..music.analysis import estimate_key, estimate_tempo

    session.time_signature, session.meter_source = (4, 4), "assumed: the meter of audio is not measured"
    seconds = mono.shape[0] / float(sr)
    if seconds < MIN_MEASURE_S:
        session.bpm, session.bpm_source = 120.0, f"default: {seconds:.1f} s is too short to measure a tempo"
        session.key_source = f"not measured: {seconds:.1f} s is too short"
        return
    with warnings.catch_warnings():  # librosa's notes about short frames are not the caller's business
        warnings.simplefilter("ignore")
        bpm, confidence = estimate_tempo(mono[:, None], sr)
        tonic, mode, key_conf = estimate_key(mono[:, None], sr)
    if bpm > 0:
        session.bpm, session.bpm_source = round(float(bpm), 2), f"estimated from the audio (confidence {confidence:.2f})"
    else:
        session.bpm, session.bpm_source = 120.0, "default: no tempo could be measured in the audio"
    session.key, session.key_source = f"{tonic} {mode}", f"estimated from the audio (confidence {key_conf:.2f})"


# -- shared text: the tempo map and the README --------------------------------------------------------------
def tempo_map(session: Session, files: list[AudioFile]) -> dict[str, Any]:
    """Tempo, meter, key and markers (seconds, beats and bars) and the files, as one JSON document."""
    num, den = session.time_signature
    beats_per_bar = num * 4.0 / den
    return {
        "format": "echotune-tempo-map/1",
        "title": session.title,
        "source_artifact_id": session.source.id,
        "kind": session.kind,
        "sample_rate": files[0].sample_rate if files else None,
        "length_frames": files[0].frames if files else 0,
        "duration_s": round(files[0].duration_s, 6) if files else 0.0,
        "tempo": {"bpm": session.bpm, "source": session.bpm_source, "constant": True},
        "time_signature": {"numerator": num, "denominator": den, "source": session.meter_source},
        "key": {"name": session.key, "source": session.key_source},
        "markers": [{"name": m.name, "time_s": round(m.time_s, 6), "beat": round(session.beats(m.time_s), 6),
                     "bar": round(session.beats(m.time_s) / beats_per_bar + 1, 6)} for m in session.markers],
        "files": [f.describe() for f in files],
    }


def readme(session: Session, files: list[AudioFile], licences: dict[str, Any], extra: list[tuple[str, str]],
           layout: str) -> str:
    """README.txt: what the archive is, and the provenance and licence of each file in it."""
    from ..artifacts import package_version

    num, den = session.time_signature
    lines = [
        f"EchoTune MCP {package_version()} export: {session.title}",
        "",
        layout,
        "",
        f"Source: artifact {session.source.id} ({session.kind})",
        f"Tempo: {session.bpm:g} bpm ({session.bpm_source})" if session.bpm else "Tempo: unknown",
        f"Meter: {num}/{den} ({session.meter_source})",
        f"Key: {session.key or 'unknown'}" + (f" ({session.key_source})" if session.key else ""),
        "Sections: " + (", ".join(f"{m.name} @ {m.time_s:.3f} s" for m in session.markers) or "none"),
        "",
        "Licence of the whole export: " + licences["export_license_text"],
        "Permitted licences for it: " + (", ".join(licences["permitted_licenses"]) or "none until the reasons are resolved"),
        "Uses (check_usage on the export artifact gives the reasons and remedies):",
        *(f"  {use}: {decision}" for use, decision in licences["uses"].items()),
        "",
        "Files",
    ]
    per = licences["artifacts"]
    for f in files:
        info = per.get(f.track.record.id, {})
        lines += [f"- {f.path}", f"    from artifact {f.track.record.id} ({f.track.record.name}, sha256 {f.track.record.sha256})",
                  f"    {f.sample_rate} Hz, {f.channels} ch, {f.frames} frames from time 0"
                  + (f"; resampled from {f.source_sample_rate} Hz" if f.source_sample_rate != f.sample_rate else ""),
                  *(f"    {line}" for line in info.get("lines", []))]
    for path, what in extra:
        lines.append(f"- {path}: {what}")
    lines += ["", "The licence facts above were read from each file's lineage when the export was made; "
                  "get_provenance and check_usage on the artifacts give the full, current record."]
    return "\n".join(lines) + "\n"


def write_text(zf: zipfile.ZipFile, name: str, text: str) -> None:
    zf.writestr(name, text.encode("utf-8"), compress_type=zipfile.ZIP_DEFLATED)


def write_json(zf: zipfile.ZipFile, name: str, doc: dict[str, Any]) -> None:
    write_text(zf, name, json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
