"""Audio toolset: separate a track into stems, remix stems, and analyse audio.

Every audio argument goes through ``load_audio_input`` (ownership, allowed roots, format, length,
NaN) and ``check_not_clipped`` before any job exists, so a bad argument is an error naming what
is allowed and leaves nothing behind. A job that fails part-way deletes the artifacts it created.
"""

import json
import time
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp_types import CallToolResult
from pydantic import Field

from ..app import App
from ..audio_inputs import AudioInput, load_audio_input
from ..errors import BadInput, Busy, NotFound
from ..jobs import JobContext, JobFailed
from ..licensing import complete_provenance, file_tags
from ..music.audio_io import (
    AudioError,
    check_not_clipped,
    encode_audio,
    media_type_for,
    resample,
)
from ..principal import current_principal
from ..views import JobView
from .base import Toolset, current_app
from .common import WaitSeconds, job_result

ModelName = Literal["auto", "htdemucs", "htdemucs_6s", "htdemucs_ft", "dsp"]
StemName = Literal["drums", "bass", "other", "vocals", "guitar", "piano"]
OutputFormat = Literal["wav", "flac", "ogg"]
AudioRef = Annotated[str, Field(min_length=1, max_length=1024,
                                description="an echotune://artifacts/{id} URI or artifact id, or an absolute path "
                                            "inside the allowed roots")]
ANALYSIS_CACHE = "idempotency"  # owner-scoped collection with a TTL; documents keyed by a deterministic id
ANALYSIS_TTL_S = 90 * 24 * 3600
STEM_SET = "stem-set"


toolset = Toolset("audio", "Separate stems, remix them, analyse audio, and transcribe it to MIDI.")


@toolset.tool(title="Separate stems", read_only=False, destructive=False, idempotent=False, ui="job")
async def separate_stems(
    audio: AudioRef,
    ctx: Context,
    model: Annotated[ModelName, Field(description="auto: the best downloaded Demucs model, else the DSP "
                                                  "fallback; htdemucs/htdemucs_ft: 4 stems; htdemucs_6s: 6 "
                                                  "stems (adds guitar, piano); dsp: classical, no weights")] = "auto",
    stems: Annotated[list[StemName] | None, Field(max_length=6, description="keep only these stems; the rest "
                                                  "are summed into one 'rest' stem so the set still adds up "
                                                  "to the input")] = None,
    output_format: Annotated[OutputFormat, Field(description="format of the stem files")] = "wav",
    wait_seconds: WaitSeconds = 20,
) -> Annotated[CallToolResult, JobView]:
    """Split a song into stems (drums, bass, other, vocals[, guitar, piano]) as a background job.

    Produces one audio artifact per stem (parent: the input) and a 'stem-set' JSON artifact listing
    them (pass it to remix). The result reports the residual check: the energy of
    (input - sum of stems) relative to the input, in dB (about -100 dB means the stems add back
    up exactly; Demucs is not constrained to sum exactly and typically lands around -20 to -30 dB).
    Without Demucs weights, model=auto uses the DSP fallback and says so (fallback: true).
    """
    from ..engine import separation_backend as sb

    app = current_app()
    owner = current_principal()
    inp = await _load_checked(app, owner, audio, "audio")
    try:
        resolved = sb.resolve_model(app.settings, model, list(stems) if stems else None)
    except sb.WeightsMissing as exc:
        raise BadInput("model", str(exc), [m for m in sb.MODEL_CHOICES if m == "auto" or m == "dsp"
                                            or sb.weights_available(app.settings, m)]) from None
    sources = sb.MODELS[resolved.model_id].sources
    if stems:
        unknown = [s for s in stems if s not in sources]
        if unknown:
            raise BadInput("stems", f"{', '.join(unknown)} not produced by {resolved.model_id}", sources)
    keep = list(dict.fromkeys(stems)) if stems else list(sources)
    params = {"audio": inp.source, "model": model, "resolved_model": resolved.model_id, "stems": keep,
              "output_format": output_format}

    async def work(job: JobContext) -> dict[str, Any]:
        return await _cleanup_on_failure(app, job, _run_separation(app, job, inp, resolved, keep, output_format))

    job = await app.jobs.submit(owner=owner, tool="separate_stems", params=params, work=work)
    return await job_result(app, owner, job.id, wait_seconds, ctx)


@toolset.tool(title="Remix stems", read_only=False, destructive=False, idempotent=False, ui="player")
async def remix(
    ctx: Context,
    artifact: Annotated[str | None, Field(max_length=256, description="a stem-set artifact from separate_stems, "
                                          "a mix from generate_music (its stems are used), or any audio "
                                          "artifact (remixed as one stem named 'mix')")] = None,
    stems: Annotated[dict[str, str] | None, Field(max_length=16, description="instead of artifact: stem name "
                                                  "-> audio (artifact id/URI or allowed path)")] = None,
    gains_db: Annotated[dict[str, Annotated[float, Field(ge=-60, le=24)]] | None,
                        Field(description="per-stem gain in dB, -60..+24")] = None,
    mute: Annotated[list[str] | None, Field(max_length=16, description="stems to leave out (wins over "
                                            "solo)")] = None,
    solo: Annotated[list[str] | None, Field(max_length=16, description="stems to hear alone: when given, "
                                            "every stem not listed is left out, as a desk's solo buttons")] = None,
    pan: Annotated[dict[str, Annotated[float, Field(ge=-1, le=1)]] | None,
                   Field(description="per-stem balance, -1 (left) .. +1 (right)")] = None,
    pitch_shift_semitones: Annotated[float, Field(ge=-12, le=12, description="transpose, semitones")] = 0.0,
    tempo_ratio: Annotated[float, Field(ge=0.5, le=2.0, description="speed factor keeping pitch; "
                                        "1.1 = 10 % faster")] = 1.0,
    fade_in_s: Annotated[float, Field(ge=0, le=60)] = 0.0,
    fade_out_s: Annotated[float, Field(ge=0, le=60)] = 0.0,
    normalize: Annotated[Literal["lufs", "peak", "none"], Field(
        description="lufs: -14 LUFS with a -1 dBTP limiter; peak: sample peak to -1 dBFS; none")] = "lufs",
    output_format: OutputFormat = "wav",
    wait_seconds: WaitSeconds = 20,
) -> Annotated[CallToolResult, JobView]:
    """Remix stems into a new mix, as a background job: per-stem gain/mute/solo/pan, then tempo and pitch
    (Rubber Band via Spotify's pedalboard), fades and loudness normalisation.

    The new mix artifact has every input stem as a parent; the inputs are untouched. The result's
    ``mix`` says which stems play, which were left out and why (muted / not soloed), and which settings
    were ignored because their stem is silent.
    """
    from ..music.remix import RemixSpec

    app = current_app()
    owner = current_principal()
    if (artifact is None) == (stems is None):
        raise BadInput("artifact", "give exactly one of artifact or stems",
                       "artifact=<stem-set, generate_music mix, or audio artifact> or stems={name: audio}")
    refs = await _stem_refs(app, owner, artifact) if artifact is not None else dict(stems or {})
    if not refs:
        raise BadInput("stems", "no stems given", "a mapping stem name -> audio")
    loaded = {name: await _load_checked(app, owner, ref, f"stems.{name}", clipped_ok=True)
              for name, ref in refs.items()}
    for fld, names in (("gains_db", gains_db or {}), ("mute", mute or []), ("solo", solo or []),
                       ("pan", pan or {})):
        bad = [n for n in names if n not in loaded]
        if bad:
            raise BadInput(fld, f"no stem named {', '.join(map(repr, bad))}", sorted(loaded))
    if mute and set(mute) >= set(loaded):
        raise BadInput("mute", "every stem is muted; the mix would be silent", sorted(loaded))
    if solo and set(solo) <= set(mute or []):
        raise BadInput("solo", "every soloed stem is also muted (mute wins); the mix would be silent",
                       sorted(set(loaded) - set(mute or [])))
    spec = RemixSpec(gains_db=dict(gains_db or {}), mute=set(mute or []), solo=set(solo or []),
                     pan=dict(pan or {}),
                     pitch_shift_semitones=pitch_shift_semitones, tempo_ratio=tempo_ratio, fade_in_s=fade_in_s,
                     fade_out_s=fade_out_s, normalize=normalize)
    params = {"inputs": {n: i.source for n, i in loaded.items()}, "gains_db": spec.gains_db,
              "mute": sorted(spec.mute), "solo": sorted(spec.solo), "pan": spec.pan, "pitch_shift_semitones": pitch_shift_semitones,
              "tempo_ratio": tempo_ratio, "fade_in_s": fade_in_s, "fade_out_s": fade_out_s,
              "normalize": normalize, "output_format": output_format}

    async def work(job: JobContext) -> dict[str, Any]:
        return await _cleanup_on_failure(app, job, _run_remix(app, job, loaded, spec, params, output_format))

    job = await app.jobs.submit(owner=owner, tool="remix", params=params, work=work)
    return await job_result(app, owner, job.id, wait_seconds, ctx)


@toolset.tool(title="Transcribe audio to MIDI", read_only=False, destructive=False, idempotent=False)
async def transcribe_to_midi(
    audio: AudioRef,
    ctx: Context,
    stem: Annotated[str | None, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z][A-Za-z0-9 _-]*$",
                                      description="what the audio is: bass, vocals, piano, guitar, lead, other, "
                                                  "drums, ... (default: the stem name of a stem artifact, else "
                                                  "'mix'). drums transcribes GM drum notes; bass keeps one note "
                                                  "at a time and the bass range; it also names the MIDI track")] = None,
    mode: Annotated[Literal["auto", "pitched", "drums"], Field(
        description="auto: drums when the stem is drums, else pitched (basic-pitch)")] = "auto",
    onset_threshold: Annotated[float, Field(ge=0.05, le=0.95, description="pitched: onset activation that starts "
                                            "a note; higher = fewer, surer notes")] = 0.5,
    frame_threshold: Annotated[float, Field(ge=0.05, le=0.95, description="pitched: activation that keeps a note "
                                            "sounding; higher = shorter notes")] = 0.3,
    min_note_ms: Annotated[float, Field(ge=10, le=2000, description="pitched: shorter notes are dropped")] = 127.7,
    min_pitch: Annotated[int | None, Field(ge=21, le=108, description="pitched: lowest MIDI note kept (21 = A0; "
                                           "default: the stem's usual range, e.g. bass 24..72)")] = None,
    max_pitch: Annotated[int | None, Field(ge=21, le=108, description="pitched: highest MIDI note kept "
                                           "(108 = C8)")] = None,
    pitch_bends: Annotated[bool, Field(description="pitched: write pitch-bend curves (one channel, so best on "
                                       "a single-line part)")] = False,
    drum_sensitivity: Annotated[float, Field(ge=0, le=1, description="drums: 0 only clear hits .. 1 every "
                                             "faint one")] = 0.5,
    bpm: Annotated[float | None, Field(ge=30, le=300, description="tempo written into the MIDI file (default: "
                                       "estimated from the audio); note times never move")] = None,
    wait_seconds: WaitSeconds = 20,
) -> Annotated[CallToolResult, JobView]:
    """Transcribe audio to a MIDI file, as a background job, to open in a DAW or re-voice.

    Pitched parts use Spotify's basic-pitch (Apache-2.0 weights, bundled ONNX model on onnxruntime, no
    TensorFlow): polyphonic and instrument-agnostic, best on one instrument at a time, so pass a stem from
    separate_stems or generate_music rather than a full mix. Drums become GM drum notes (kick 36, snare 38,
    closed hi-hat 42) from onsets in three frequency bands. The MIDI artifact (audio/midi) has the input as
    its parent; the result gives note count, pitch range, tempo, the backend and why, and which options were
    applied or ignored (e.g. thresholds in drum mode). Measured accuracy: docs/TRANSCRIPTION.md.
    """
    from ..music import transcribe as tr

    app = current_app()
    owner = current_principal()
    if min_pitch is not None and max_pitch is not None and min_pitch > max_pitch:
        raise BadInput("min_pitch", f"{min_pitch} is above max_pitch {max_pitch}", "min_pitch <= max_pitch, 21..108")
    inp = await _load_checked(app, owner, audio, "audio", clipped_ok=True)
    stem_name = stem or (inp.artifact.meta.get("stem") if inp.artifact is not None else None) or None
    stem_from = "argument" if stem else ("the stem artifact's name" if stem_name else "default")
    stem_name = str(stem_name).strip().lower() if stem_name else "mix"
    drums = mode == "drums" or (mode == "auto" and stem_name in ("drums", "drum", "percussion"))
    applied: dict[str, Any] = {"mode": "drums" if drums else "pitched", "stem": stem_name, "stem_from": stem_from}
    ignored: list[str] = []
    passed = {"onset_threshold": onset_threshold != 0.5, "frame_threshold": frame_threshold != 0.3,
              "min_note_ms": min_note_ms != 127.7, "min_pitch": min_pitch is not None,
              "max_pitch": max_pitch is not None, "pitch_bends": pitch_bends,
              "drum_sensitivity": drum_sensitivity != 0.5}
    if drums:
        ignored += [f"{k} (pitched parts only)" for k, given in passed.items() if given and k != "drum_sensitivity"]
        opts = tr.Options(bpm=bpm)
        applied["drum_sensitivity"] = drum_sensitivity
    else:
        try:
            tr.backend_info()
        except tr.TranscriberMissing as exc:
            raise BadInput("mode", str(exc), "drums (needs no model), or install basic-pitch") from None
        lo, hi, _, _ = tr.stem_defaults(stem_name)
        lo = min_pitch if min_pitch is not None else lo
        hi = max_pitch if max_pitch is not None else hi
        if lo > hi:
            raise BadInput("min_pitch" if min_pitch is not None else "max_pitch",
                           f"the range {lo}..{hi} is empty (the other end is the {stem_name} default)",
                           "give both min_pitch and max_pitch, min_pitch <= max_pitch")
        if passed["drum_sensitivity"]:
            ignored.append("drum_sensitivity (drums only)")
        opts = tr.Options(onset_threshold=onset_threshold, frame_threshold=frame_threshold,
                          min_note_ms=min_note_ms, min_pitch=lo, max_pitch=hi, pitch_bends=pitch_bends, bpm=bpm)
        applied.update({"onset_threshold": onset_threshold, "frame_threshold": frame_threshold,
                        "min_note_ms": min_note_ms, "pitch_range": [lo, hi],
                        "pitch_range_from": _range_source(min_pitch, max_pitch, stem_name in tr.STEM_DEFAULTS,
                                                          stem_name),
                        "pitch_bends": pitch_bends})
    params = {"audio": inp.source, "stem": stem_name, "mode": applied["mode"], "options": {
        k: v for k, v in applied.items() if k not in ("mode", "stem", "stem_from")}, "bpm": bpm}

    async def work(job: JobContext) -> dict[str, Any]:
        return await _cleanup_on_failure(app, job, _run_transcription(app, job, inp, stem_name, drums, opts,
                                                                      drum_sensitivity, params, applied, ignored))

    job = await app.jobs.submit(owner=owner, tool="transcribe_to_midi", params=params, work=work)
    return await job_result(app, owner, job.id, wait_seconds, ctx)


@toolset.tool(title="Analyse audio", read_only=True)
async def analyze_audio(
    audio: AudioRef,
    ctx: Context,
    wait_seconds: WaitSeconds = 20,
) -> Annotated[CallToolResult, JobView]:
    """Measure a track: tempo (bpm, confidence, beat times), key and mode with a confidence,
    integrated loudness (LUFS, BS.1770) and true peak, dynamic range (EBU loudness range, crest
    factor), spectral centroid and brightness (energy share above 1.5 kHz), onset density, and two
    transparent 0..1 scores:
    energy = 0.5*clip((LUFS+30)/24) + 0.3*clip(onsets_per_s/8) + 0.2*clip(brightness/0.5);
    danceability = 0.35*exp(-0.5*(log2(bpm/118)/0.5)^2) + 0.45*tempo_confidence + 0.20*clip(2*percussive_share).

    Always runs as a job and waits up to wait_seconds: a few minutes of audio finishes within the
    default wait (the result is in the job's result), longer audio returns a handle to poll with
    get_job. Results are cached per audio content (sha256), so asking again is instant; the same
    JSON is the resource echotune://artifacts/{id}/analysis.
    """
    app = current_app()
    owner = current_principal()
    inp = await _load_checked(app, owner, audio, "audio", clipped_ok=True)

    async def work(job: JobContext) -> dict[str, Any]:
        await job.progress(0.05, "analysing")
        return await _analysis(app, owner, inp)

    job = await app.jobs.submit(owner=owner, tool="analyze_audio", params={"audio": inp.source}, work=work)
    return await job_result(app, owner, job.id, wait_seconds, ctx)


@toolset.resource("echotune://artifacts/{artifact_id}/analysis", name="artifact-analysis", mime_type="application/json",
                  description="analyze_audio's result for an audio artifact (computed on first read, then cached).")
async def artifact_analysis(artifact_id: str) -> str:
    app = current_app()
    owner = current_principal()
    # A resource read answers promptly: if the CPU pool has no free thread soon (to decode, then to
    # analyse), the reader is told busy.
    try:
        try:
            inp = await load_audio_input(app, owner, artifact_id, allow_paths=False)
        except (NotFound, BadInput) as exc:
            raise ResourceNotFoundError(str(exc)) from None
        return json.dumps(await _analysis(app, owner, inp, start_within=app.settings.max_wait_seconds))
    except Busy as exc:
        raise ResourceError(str(exc)) from None


def _range_source(min_pitch: int | None, max_pitch: int | None, stem_known: bool, stem: str) -> str:
    """Where transcribe_to_midi's pitch range came from, for the result's ``applied``."""
    default = f"the {stem} default" if stem_known else "basic-pitch's 88 keys"
    if min_pitch is not None and max_pitch is not None:
        return "argument"
    if min_pitch is None and max_pitch is None:
        return default
    return f"{'min_pitch' if min_pitch is not None else 'max_pitch'} argument, the other end {default}"


# -- validation ---------------------------------------------------------------------------------------------
async def _load_checked(app: App, owner: str, ref: str, field: str, *, clipped_ok: bool = False) -> AudioInput:
    """Decode and check one audio argument; clipping is refused where it would corrupt the result."""
    inp = await load_audio_input(app, owner, ref, field=field)
    if not clipped_ok:
        try:
            check_not_clipped(inp.audio, what=field)
        except AudioError as exc:
            raise BadInput(field, str(exc)) from None
    return inp


async def _stem_refs(app: App, owner: str, ref: str) -> dict[str, str]:
    """Stems behind an artifact: a stem set's list, a generated mix's meta.stems, else the audio itself."""
    rec = await app.artifacts.resolve(owner, ref)
    if rec.kind == "json" and rec.meta.get("type") == STEM_SET:
        return dict(rec.meta["stems"])
    if rec.meta.get("stems") and isinstance(rec.meta["stems"], dict):
        return dict(rec.meta["stems"])
    if rec.media_type.startswith("audio/") and rec.media_type != "audio/midi":
        return {"mix": rec.id}
    raise BadInput("artifact", f"{rec.id} is a {rec.kind} ({rec.media_type}) artifact",
                   "a stem-set from separate_stems, a mix from generate_music, or an audio artifact")


# -- jobs ---------------------------------------------------------------------------------------------------
async def _cleanup_on_failure(app: App, job: JobContext, coro: Any) -> dict[str, Any]:
    """Run the job body; if it fails or is cancelled, delete what it created so no partial set is left.

    That is every artifact recorded under the job id, which includes what hooks made for them
    (e.g. content-credential manifests), not only those the job added itself.
    """
    try:
        return await coro
    except BaseException:
        ids = [r.id for r in job.artifacts]
        try:
            cursor = None
            while True:
                page, cursor = await app.artifacts.list(job.owner, job_id=job.job.id, limit=100, cursor=cursor)
                ids += [r.id for r in page if r.id not in ids]
                if not cursor:
                    break
        except Exception:  # listing is best effort; the job's own list is still deleted
            pass
        for art_id in reversed(ids):
            try:
                await app.artifacts.delete(job.owner, art_id)
            except Exception:  # already gone; keep deleting the rest
                pass
        job.job.artifact_ids.clear()
        try:
            await app.storage.jobs.update(job.owner, job.job.id, {"artifact_ids": []})
        except Exception:
            pass
        raise


async def _run_separation(app: App, job: JobContext, inp: AudioInput, resolved: Any, keep: list[str],
                          fmt: str) -> dict[str, Any]:
    from ..engine import separation_backend as sb

    audio = inp.audio
    await job.progress(0.01, f"separating with {resolved.model_id}")
    t0 = time.monotonic()
    try:
        sep = await sb.separate(app.settings, audio.samples, audio.sample_rate, resolved,
                                on_progress=lambda f, m: job.progress_threadsafe(0.02 + 0.85 * f, m),
                                run_cpu=job.run_in_thread)
    except (sb.WeightsMissing, FileNotFoundError) as exc:
        raise JobFailed(str(exc)) from exc
    elapsed = time.monotonic() - t0
    out = {n: sep.stems[n] for n in keep}
    rest = [n for n in sep.stems if n not in keep]
    if rest:
        out["rest"] = sum(sep.stems[n] for n in rest)
    parents = [inp.artifact.id] if inp.artifact is not None else []
    prov = {"tool": "separate_stems", "backend": sep.model["backend"], "model": sep.model,
            "parameters": {"model": resolved.model_id, "stems": keep, "output_format": fmt}, "input": inp.source}
    await job.progress(0.9, "saving stems")
    stem_ids: dict[str, str] = {}
    for name, y in out.items():
        data = await job.run_in_thread(lambda y=y: encode_audio(y, sep.sample_rate, fmt, file_tags(prov, None)))
        meta = {"stem": name, "sample_rate": sep.sample_rate, "duration_s": round(len(y) / sep.sample_rate, 3),
                "model": resolved.model_id, **({"summed_from": rest} if name == "rest" else {})}
        rec = await job.add_artifact(data=data, kind="stem", media_type=media_type_for(fmt), name=f"stem-{name}.{fmt}",
                                     parents=parents, meta=meta, provenance=prov)
        stem_ids[name] = rec.id
    residual = {"energy_db": round(sep.residual_db, 2),
                "meaning": "energy of (input - sum of all stems) relative to the input; lower is better"}
    listing = {"type": STEM_SET, "stems": stem_ids, "model": resolved.model_id, "residual": residual}
    stem_set = await job.add_artifact(data=json.dumps(listing, indent=1).encode(), kind="json",
                                      media_type="application/json", name="stem-set.json",
                                      parents=[*parents, *stem_ids.values()], meta=listing, provenance=prov)
    fallback = sep.model.get("backend") == "dsp"
    return {"backend": sep.model["backend"], "model": sep.model, "fallback": fallback and resolved.fallback,
            "note": resolved.reason if fallback else None, "stems": stem_ids, "stem_set_artifact_id": stem_set.id,
            "residual": residual, "duration_s": round(audio.duration_s, 3),
            "seconds_per_audio_second": round(elapsed / max(audio.duration_s, 1e-9), 3)}


async def _run_transcription(app: App, job: JobContext, inp: AudioInput, stem: str, drums: bool, opts: Any,
                             drum_sensitivity: float, params: dict[str, Any], applied: dict[str, Any],
                             ignored: list[str]) -> dict[str, Any]:
    from ..music import transcribe as tr

    audio = inp.audio
    await job.progress(0.02, "transcribing drums" if drums else "transcribing with basic-pitch")
    threads = tr.default_threads(app.settings.cpu_workers)
    t0 = time.monotonic()
    result = await job.run_in_thread(lambda: tr.transcribe(
        audio.samples, audio.sample_rate, drums=drums, opts=opts, stem=stem, threads=threads,
        drum_sensitivity=drum_sensitivity, progress=lambda f, m: job.progress_threadsafe(0.05 + 0.85 * f, m)))
    elapsed = time.monotonic() - t0
    await job.progress(0.92, "saving the MIDI file")
    backend = result.backend
    if drums:
        model = None  # onset detection and band energy: no trained weights
        prov_backend = "dsp"
    else:
        model = {"model_id": tr.MODEL_ID, "backend": "basic-pitch", "weights_revision": backend["weights_revision"],
                 "weights_license": "Apache-2.0", "runtime": backend["name"], "sha256": backend["model_sha256"]}
        prov_backend = "basic-pitch"
    prov = complete_provenance({"tool": "transcribe_to_midi", "backend": prov_backend, "model": model,
                                "processing": backend["name"], "parameters": params, "input": inp.source},
                               app.settings)
    summary = {**result.summary(), "duration_s": round(audio.duration_s, 3)}
    parents = [inp.artifact.id] if inp.artifact is not None else []
    rec = await job.add_artifact(data=result.midi, kind="midi", media_type="audio/midi",
                                 name=f"transcription-{stem}.mid", parents=parents,
                                 meta={"type": "transcription", "stem": stem, **summary}, provenance=prov)
    return {"midi_artifact_id": rec.id, "midi_uri": f"echotune://artifacts/{rec.id}/content", "summary": summary,
            "backend": {k: backend.get(k) for k in ("name", "why", "basic_pitch", "onnxruntime") if backend.get(k)},
            "applied": applied, "ignored": ignored, "parents": parents,
            "seconds_per_audio_second": round(elapsed / max(audio.duration_s, 1e-9), 3)}


async def _run_remix(app: App, job: JobContext, loaded: dict[str, AudioInput], spec: Any, params: dict[str, Any],
                     fmt: str) -> dict[str, Any]:
    from ..music.remix import mix_report
    from ..music.remix import remix as do_remix

    sr = max(i.audio.sample_rate for i in loaded.values())
    await job.progress(0.05, "mixing stems")
    stems = {n: resample(i.audio.samples, i.audio.sample_rate, sr) for n, i in loaded.items()}
    y, stats = await job.run_in_thread(do_remix, stems, sr, spec)
    await job.progress(0.9, "saving the mix")
    prov = {"tool": "remix", "backend": "dsp", "processing": "numpy gains/pans/fades + pedalboard (Rubber Band) "
            "time-stretch and pitch-shift", "parameters": params, "model": None,
            # outside files (local paths) it read; artifacts are parents, checked through the lineage
            "input": [i.source for i in loaded.values() if i.artifact is None]}
    data = await job.run_in_thread(lambda: encode_audio(y, sr, fmt, file_tags(prov, None)))
    parents = list(dict.fromkeys(i.artifact.id for i in loaded.values() if i.artifact is not None))
    rec = await job.add_artifact(data=data, kind="audio", media_type=media_type_for(fmt), name=f"remix.{fmt}",
                                 parents=parents, meta={"sample_rate": sr, "duration_s": stats["duration_s"],
                                                        "stems": {n: i.artifact.id for n, i in loaded.items()
                                                                  if i.artifact is not None},
                                                        "loudness": stats},
                                 provenance=prov)
    return {"mix_artifact_id": rec.id, "mix_uri": f"echotune://artifacts/{rec.id}/content", "stats": stats,
            "parents": parents, "mix": mix_report(list(loaded), spec)}


# -- analysis cache -----------------------------------------------------------------------------------------
def _cache_id(sha256: str) -> str:
    from ..music.features import VERSION

    return f"analysis-v{VERSION}-{sha256}"


async def _analysis(app: App, owner: str, inp: AudioInput, start_within: float | None = None) -> dict[str, Any]:
    """The cached analysis for this audio content, computing it on a miss in the CPU pool (bounded work)."""
    from ..music.features import analyze

    sha = inp.source.get("sha256") or (inp.artifact.sha256 if inp.artifact else None)
    coll = app.storage.collection(ANALYSIS_CACHE)
    doc = await coll.get(owner, _cache_id(sha)) if sha else None
    if doc is not None:
        return {**doc["analysis"], "cached": True, "sha256": sha}
    result = await app.cpu.run(analyze, inp.audio.samples, inp.audio.sample_rate, start_within=start_within)
    if sha:
        now = time.time()
        try:
            await coll.insert({"id": _cache_id(sha), "owner": owner, "key": f"analysis:{sha}", "created_at": now,
                               "expires_at": now + ANALYSIS_TTL_S, "analysis": result})
        except Exception:  # a concurrent analysis stored it first; same content, same answer
            pass
    return {**result, "cached": False, "sha256": sha}

