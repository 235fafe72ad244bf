"""Compose toolset: generate music from text, then iterate stem by stem.

The offline default is the symbolic composer rendered through FluidSynth; MusicGen (through the
local engine) is used when its weights are present. Both run as jobs that publish a preview
artifact early, then the mix, stems, MIDI and a waveform picture.
"""

import base64
import secrets
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import anyio
import numpy as np
from mcp.server.mcpserver import Context
from mcp_types import AudioContent, CallToolResult
from pydantic import Field

from ..app import App
from ..audio_inputs import load_audio_input
from ..errors import BadInput
from ..jobs import JobContext, JobFailed, JobWork, resumable
from ..licensing import complete_provenance, file_tags
from ..music import params as music_params
from ..music.audio_io import decode_audio, media_type_for
from ..music.interpret import interpret_request, limit_parts, musicgen_interpretation
from ..music.stem_changes import StemChanges, describe_patterns
from ..principal import current_principal
from ..storage.records import ArtifactRecord
from ..views import JobView
from .base import Toolset, current_app
from .common import WaitSeconds, job_result

GenreName = Literal[tuple(music_params.GENRES)]  # type: ignore[valid-type]
MoodName = Literal[tuple(music_params.MOODS)]  # type: ignore[valid-type]
InstrumentName = Literal[tuple(music_params.INSTRUMENTS)]  # type: ignore[valid-type]
MeterName = Literal["4/4", "3/4", "6/8", "12/8"]
FeelName = Literal["straight", "swing", "shuffle"]
OutputFormat = Literal["wav", "flac", "ogg"]
# generate_music's duration_s bound in the schema: the most Settings.validate lets any server allow; the
# server's own ECHOTUNE_MAX_GENERATION_SECONDS is checked when the tool is called (the schema is static)
MAX_DURATION_SCHEMA_S = 3600
COMPOSER_MODEL = {"model_id": "echotune-composer", "backend": "composer", "weights_license": None}


def _control_error(exc: Exception) -> BadInput:
    field = getattr(exc, "field", "arguments")
    return BadInput(field, str(exc))


toolset = Toolset("compose", "Generate music from text and iterate on it stem by stem.")


@toolset.tool(title="Generate music", read_only=False, destructive=False, idempotent=False, ui="job")
async def generate_music(
    prompt: Annotated[str, Field(min_length=1, max_length=1000,
                                 description="what to make, in words: genre, mood, instruments, tempo "
                                             "('85 bpm', 'fast'), key ('in A minor'), meter ('in 3/4'), "
                                             "what to leave out ('no drums', 'not sad'); the result's "
                                             "interpreted field says how it was read")],
    ctx: Context,
    duration_s: Annotated[float, Field(gt=0, le=MAX_DURATION_SCHEMA_S, description=(
        "length in seconds; at most this server's limit (ECHOTUNE_MAX_GENERATION_SECONDS, 300 by default); "
        "longer is refused naming the limit"))] = 30.0,
    genre: Annotated[GenreName | None, Field(description="overrides a genre named in the prompt")] = None,
    mood: Annotated[MoodName | None, Field(description="overrides a mood named in the prompt")] = None,
    bpm: Annotated[float | None, Field(ge=40, le=240, description="tempo, 40-240 beats per minute")] = None,
    key: Annotated[str | None, Field(max_length=16, description="e.g. 'A minor', 'F# major', 'Bb minor'")] = None,
    instruments: Annotated[list[InstrumentName] | None, Field(max_length=8,
                                                              description="instruments to feature")] = None,
    structure: Annotated[list[str] | None, Field(max_length=16, description="section names in order, e.g. "
                                                 "['intro','verse','chorus','verse','chorus','outro']")] = None,
    seed: Annotated[int | None, Field(ge=0, le=2**31 - 1, description="same seed + arguments = same music")] = None,
    meter: Annotated[MeterName | None, Field(description=(
        "time signature; overrides one the prompt names ('in 3/4', 'waltz', '12/8 blues'); default: the "
        "style's usual meter"))] = None,
    feel: Annotated[FeelName | None, Field(description=(
        "rhythmic feel of the off-beats; overrides the prompt ('swing', 'shuffle'); default: the style's "
        "own feel"))] = None,
    backend: Annotated[Literal["auto", "composer", "musicgen"], Field(
        description="auto: MusicGen when its weights are downloaded, else the offline composer")] = "auto",
    model: Annotated[str, Field(max_length=64, description="MusicGen model id or 'auto'")] = "auto",
    continue_from: Annotated[str | None, Field(max_length=1024, description=(
        "audio to extend (artifact id/URI, or a local path inside the allowed roots); MusicGen only: the "
        "result is the clip's last seconds (up to 10 s) followed by duration_s of new music"))] = None,
    melody: Annotated[str | None, Field(max_length=1024, description=(
        "audio whose melody to follow (artifact id/URI, or a local path inside the allowed roots); needs the "
        "musicgen-melody weights; its chromagram (first 30 s) conditions the generation"))] = None,
    output_format: Annotated[OutputFormat, Field(description="format of the mix artifact")] = "wav",
    inline_preview: Annotated[bool, Field(description="also inline a short OGG preview (<1 MiB) in the result")] = False,
    wait_seconds: WaitSeconds = 20,
) -> Annotated[CallToolResult, JobView]:
    """Generate a piece of music from a text prompt, as a background job.

    Returns the finished result if it completes within wait_seconds, else a job handle to poll
    with get_job. The result names the backend that ran and why (backend, backend_reason).
    Composer: produces a quick preview (first seconds), the mastered mix (-14 LUFS), one stem
    per instrument, the MIDI file, an arrangement (JSON, used by regenerate_stem/add_stem) and a
    waveform picture; it applies every control; explicit arguments override what the prompt
    says and the result lists which parameters came from the text.
    MusicGen: produces previews and the mastered mix. It is conditioned on text only, so genre,
    mood, bpm, key and instruments given as arguments are added to the prompt it reads (e.g.
    'ambient pad, calm, 85 bpm, A minor, with piano'; prompt_sent shows the exact text);
    structure cannot be applied. The result lists applied controls and how, not_applied ones
    and why, and left_to_model (controls nobody named, which MusicGen chose freely, unmeasured).
    Both: `interpreted` says how the prompt was read, field by field (genre, mood, tempo, key,
    meter, feel, instruments, structure: value, source argument/prompt/default/style default,
    the prompt words, a note such as an unknown genre's nearest style), what the prompt ruled
    out (`negated`: "not sad", "no drums", "no intro") and what looked like a control but was
    not used, with why (`not_understood`). Check it, and pass an argument to correct a field.
    """
    app = current_app()
    owner = current_principal()
    max_dur = app.settings.max_generation_seconds
    if duration_s > max_dur:  # the schema's bound is the ceiling every server allows; this server's may be lower
        raise BadInput("duration_s", f"{duration_s:g} seconds is longer than this server generates",
                       f"more than 0 and at most {max_dur:g} seconds, this server's ECHOTUNE_MAX_GENERATION_SECONDS")
    try:
        resolved, interpreted = interpret_request(
            prompt, duration_s=duration_s, genre=genre, mood=mood, bpm=bpm, key=key,
            instruments=list(instruments) if instruments else None, structure=structure, seed=seed,
            max_duration_s=max_dur, meter=meter, feel=feel)
    except music_params.ControlError as exc:
        raise _control_error(exc) from None
    continuation = tune = None
    if continue_from is not None:
        continuation = await _musicgen_audio_input(
            app, owner, backend, continue_from, "continue_from", "continuing a clip needs MusicGen",
            "backend=auto or backend=musicgen with MusicGen weights downloaded")
    if melody is not None:
        def melody_model() -> None:
            if model not in ("auto", "musicgen-melody"):
                raise BadInput("model", f"a melody needs musicgen-melody, not {model}", "auto, musicgen-melody")

        tune = await _musicgen_audio_input(
            app, owner, backend, melody, "melody", "following a melody needs MusicGen-Melody",
            "backend=auto or backend=musicgen with musicgen-melody downloaded", melody=True, check=melody_model)
    if tune is not None:
        chosen, why = "musicgen", "a melody was given, and only MusicGen-Melody can follow one"
    else:
        chosen, why = await _choose_backend(app, backend)
        if continuation is not None:
            why += "; continuing a clip needs MusicGen"
    explicit = {"genre": genre, "mood": mood, "bpm": bpm, "key": key,
                "instruments": list(instruments) if instruments else None, "structure": structure,
                "meter": meter, "feel": feel}
    text = _musicgen_conditioning(prompt, resolved, explicit) if chosen == "musicgen" else None
    if text is not None:
        interpreted = musicgen_interpretation(interpreted, text.applied, text.not_applied, text.left_to_model)
    args = {"prompt": prompt, "duration_s": duration_s, "backend": chosen, "backend_reason": why, "model": model,
            "output_format": output_format, "resolved": resolved.to_dict(), "continue_from": continue_from,
            "melody": melody, "interpreted": interpreted, **({"prompt_sent": text.prompt} if text else {})}

    async def work(job: JobContext) -> dict[str, Any]:
        if text is not None:
            out = await _run_musicgen(app, job, text, resolved, model, output_format, continuation, tune)
        else:
            out = await _run_composer(app, job, resolved, output_format, prompt=prompt)
            out["not_applied"] = {}  # the composer applies every control
        return {**out, "backend_reason": why, "interpreted": _with_parts(interpreted, out)}

    job = await app.jobs.submit(owner=owner, tool="generate_music", params=args, work=work)
    result = await job_result(app, owner, job.id, wait_seconds, ctx)
    if inline_preview:
        await _attach_inline_preview(app, owner, result)
    return result


@toolset.tool(title="Regenerate one stem", read_only=False, destructive=False, idempotent=False, ui="job")
async def regenerate_stem(
    artifact: Annotated[str, Field(min_length=1, max_length=256,
                                   description="the mix artifact (id or URI) from generate_music")],
    stem: Annotated[str, Field(min_length=1, max_length=40, description="stem name, e.g. drums, bass, lead")],
    ctx: Context,
    instruction: Annotated[str | None, Field(max_length=300, description=(
        "free text mapped onto the same changes, e.g. 'busier', 'lower the volume', 'an octave lower', "
        "'walking bass', 'half-time drums', 'swing it', 'more legato', 'not so busy', 'more human', "
        "'play it in the low register'"))] = None,
    seed: Annotated[int | None, Field(ge=0, le=2**31 - 1, description=(
        "omit for a new take on every call; give one (e.g. the seed a result reports) to repeat a take"))] = None,
    changes: Annotated[StemChanges | None, Field(description=(
        "structured changes (all optional): octave, density, velocity, swing, feel, articulation, pattern, "
        "humanize, register; they override the instruction's text on the same field"))] = None,
    output_format: OutputFormat = "wav",
    wait_seconds: WaitSeconds = 20,
) -> Annotated[CallToolResult, JobView]:
    """Re-compose one stem of a generated piece, keeping the others, and re-mix.

    The new mix and stem are new artifacts whose parents are the originals; the original
    piece is untouched, so you can compare versions. Changes come as typed ``changes`` and/or a
    free-text ``instruction``; the result's ``applied`` lists each change made (field, value, and
    whether it came from "changes" or "text: <words>"), ``ignored`` each one not made and why (a
    pattern this role does not know, swing in 6/8 or 12/8, an octave on drums, words not
    understood, text overridden by an explicit change). Its seed repeats this exact take.
    Named patterns in 4/4 — {patterns}.
    """
    app = current_app()
    owner = current_principal()
    mix, arrangement, resolved = await _load_piece(app, owner, artifact)
    names = [t.name for t in arrangement.tracks]
    if stem not in names:
        raise BadInput("stem", f"{stem!r} is not a stem of this piece", names)
    from ..music.composer import edit_stem, explain_instruction

    # A fresh seed per call: asking again means "another take", not the same one again.
    new_seed = seed if seed is not None else secrets.randbelow(2**31)
    role = next(t.role for t in arrangement.tracks if t.name == stem)
    _, understood, not_understood = explain_instruction(instruction, role, arrangement.meter)
    try:
        new_arr, applied, ignored = edit_stem(arrangement, resolved, stem, instruction, new_seed, changes)
    except music_params.ControlError as exc:
        raise _control_error(exc) from None
    report = {"text": instruction, "understood": understood, "ignored": not_understood}
    given = changes.given() if changes else None

    async def work(job: JobContext) -> dict[str, Any]:
        return await _rerender(app, job, mix, new_arr, resolved, changed={stem}, output_format=output_format,
                               note={"operation": "regenerate_stem", "stem": stem, "instruction": report,
                                     "changes": given, "applied": applied, "ignored": ignored,
                                     "seed": new_seed, "seed_given": seed is not None})

    job = await app.jobs.submit(owner=owner, tool="regenerate_stem",
                                params={"artifact": mix.id, "stem": stem, "instruction": instruction,
                                        "changes": given, "seed": new_seed}, work=work)
    return await job_result(app, owner, job.id, wait_seconds, ctx)


# the named patterns come from the style data, so the description always lists what exists
regenerate_stem.__doc__ = (regenerate_stem.__doc__ or "").replace("{patterns}", describe_patterns())


@toolset.tool(title="Add a stem", read_only=False, destructive=False, idempotent=False, ui="job")
async def add_stem(
    artifact: Annotated[str, Field(min_length=1, max_length=256,
                                   description="the mix artifact (id or URI) from generate_music")],
    instrument: Annotated[InstrumentName, Field(description="the instrument to add")],
    ctx: Context,
    role: Annotated[Literal["pad", "arpeggio", "lead", "bass", "percussion", "texture", "counter"] | None,
                    Field(description="what the new part does; chosen from the instrument if omitted")] = None,
    seed: Annotated[int | None, Field(ge=0, le=2**31 - 1, description=(
        "omit for a new take on every call; give one (e.g. the seed a result reports) to repeat a take"))] = None,
    changes: Annotated[StemChanges | None, Field(description=(
        "structured changes for the new part (all optional): octave, density, velocity, swing, feel, "
        "articulation, pattern, humanize, register; they override the instruction on the same field"))] = None,
    instruction: Annotated[str | None, Field(max_length=300, description=(
        "free text for the new part, e.g. 'sparse and legato', 'in the high register', 'quieter'"))] = None,
    output_format: OutputFormat = "wav",
    wait_seconds: WaitSeconds = 20,
) -> Annotated[CallToolResult, JobView]:
    """Add one new instrument part to a generated piece and re-mix; the original stays as it was.

    ``changes`` / ``instruction`` shape the new part as in regenerate_stem; the result's
    ``applied`` and ``ignored`` say what was done and what was not, and why. Without a seed each
    call is a new take; the result's seed repeats it.
    """
    app = current_app()
    owner = current_principal()
    mix, arrangement, resolved = await _load_piece(app, owner, artifact)
    from ..music import composer

    new_seed = seed if seed is not None else secrets.randbelow(2**31)
    try:
        new_arr, applied, ignored = composer.add_stem(arrangement, resolved, instrument, role, new_seed,
                                                    changes, instruction)
    except music_params.ControlError as exc:
        raise _control_error(exc) from None
    added = {t.name for t in new_arr.tracks} - {t.name for t in arrangement.tracks}
    given = changes.given() if changes else None

    async def work(job: JobContext) -> dict[str, Any]:
        return await _rerender(app, job, mix, new_arr, resolved, changed=added, output_format=output_format,
                               note={"operation": "add_stem", "instrument": instrument, "role": role,
                                     "changes": given, "instruction": instruction, "applied": applied,
                                     "ignored": ignored, "seed": new_seed, "seed_given": seed is not None})

    job = await app.jobs.submit(owner=owner, tool="add_stem",
                                params={"artifact": mix.id, "instrument": instrument, "role": role,
                                        "changes": given, "instruction": instruction, "seed": new_seed},
                                work=work)
    return await job_result(app, owner, job.id, wait_seconds, ctx)


# -- backends ---------------------------------------------------------------------------------------
async def _choose_backend(app: App, backend: str) -> tuple[str, str]:
    """(backend, why it was chosen), for the result."""
    if backend == "composer":
        return "composer", "requested: backend=composer"
    available, why = await _musicgen_status(app)
    if backend == "musicgen":
        if not available:
            raise BadInput("backend", why, "auto, composer")
        return "musicgen", "requested: backend=musicgen"
    if available:
        return "musicgen", "backend=auto and MusicGen weights are available"
    return "composer", f"backend=auto and MusicGen cannot run here ({why.split(': run')[0]}), so the offline composer ran"


async def _musicgen_audio_input(app: App, owner: str, backend: str, ref: str, field: str, needs: str,
                                allowed: str, melody: bool = False, check: Any = None) -> Any:
    """An audio argument only MusicGen can use: refused for the composer, by ``check`` or without weights,
    else loaded."""
    if backend == "composer":
        raise BadInput(field, f"{needs}, not the composer", allowed)
    if check is not None:
        check()
    ok, why = await _musicgen_status(app, melody=melody)
    if not ok:
        raise BadInput(field, why if melody else f"{needs}: {why}")
    return await load_audio_input(app, owner, ref, field=field)


async def _musicgen_status(app: App, melody: bool = False) -> tuple[bool, str]:
    """Whether MusicGen can run, and if not why (asks the engine daemon, off the event loop, when one is set)."""
    try:
        from ..engine.musicgen_backend import musicgen_available
    except ImportError:
        return False, "MusicGen needs the ml extra (pip install 'echotune-mcp[ml]'); use backend=composer"
    if not await anyio.to_thread.run_sync(lambda: musicgen_available(app.settings, melody=melody)):
        wanted = "musicgen-melody" if melody else "musicgen-small"
        if app.settings.engine_url:
            return False, (f"the engine daemon at {app.settings.engine_url} cannot be reached or has no "
                           f"{wanted} weights: start it with `echotune-mcp engine serve` and run "
                           f"`echotune-mcp models pull {wanted}` where it runs"
                           + ("" if melody else ", or use backend=composer"))
        return False, (f"no {'MusicGen-Melody' if melody else 'MusicGen'} weights are downloaded: run "
                       f"`echotune-mcp models pull {wanted}`" + ("" if melody else ", or use backend=composer"))
    return True, ""


def _soundfont_record(app: App) -> dict[str, Any]:
    from ..music.render import soundfont_info

    return soundfont_info(app.settings.soundfont)


@resumable("generate_music")
def _resume_generate_music(app: App, record: Any) -> JobWork | None:
    """A composer generation is a pure function of its stored params (the seed was resolved at submit), so a
    replica can run it again when the one running it stopped (docs/SCALE.md). MusicGen ones are not re-run:
    sampling on another device is not bit-for-bit the same, and their audio inputs are not in the params."""
    p = record.params
    if p.get("backend") != "composer" or not isinstance(p.get("resolved"), dict):
        return None
    resolved = music_params.ResolvedParams.from_dict(p["resolved"])
    fmt, prompt, why = p.get("output_format", "wav"), p.get("prompt", ""), p.get("backend_reason", "")

    async def work(job: JobContext) -> dict[str, Any]:
        out = await _run_composer(app, job, resolved, fmt, prompt=prompt)
        out["not_applied"] = {}
        return {**out, "backend_reason": why, "interpreted": _with_parts(p.get("interpreted") or {}, out)}

    return work


async def _run_composer(app: App, job: JobContext, resolved: Any, fmt: str, *, prompt: str) -> dict[str, Any]:
    from ..music.composer import compose
    from ..music.pipeline import render_preview

    sr = app.settings.sample_rate
    sf = app.settings.soundfont
    await job.progress(0.02, "composing the arrangement")
    arrangement = await job.run_in_thread(compose, resolved)
    parts = limit_parts(arrangement, resolved.without, resolved.only)  # "no drums", "solo piano"
    soundfont = _soundfont_record(app)
    base_prov = {"tool": job.job.tool, "backend": "composer", "model": COMPOSER_MODEL, "soundfont": soundfont,
                 "prompt": prompt, "parameters": resolved.to_dict(), "seed": resolved.seed}
    arr_art = await job.add_artifact(data=arrangement.to_json().encode(), kind="arrangement",
                                     media_type="application/json", name="arrangement.json",
                                     provenance=base_prov)
    await job.progress(0.05, "rendering a preview of the first seconds")
    preview, _ = await job.run_in_thread(lambda: render_preview(arrangement, sample_rate=sr, soundfont=sf))
    preview_art = await job.add_artifact(data=_encode(preview, sr, "ogg", base_prov), kind="preview",
                                         media_type=media_type_for("ogg"), name="preview.ogg",
                                         parents=[arr_art.id], meta={"seconds": round(len(preview) / sr, 2)},
                                         provenance=base_prov)
    await job.progress(0.12, "preview ready; rendering the full piece")
    return await _finish_render(app, job, arrangement, resolved, fmt, arr_art, base_prov,
                                extra_result={"preview_artifact_id": preview_art.id, "from_text": resolved.from_text,
                                              **({"parts": parts} if parts else {})})


async def _finish_render(app: App, job: JobContext, arrangement: Any, resolved: Any, fmt: str,
                         arr_art: ArtifactRecord, base_prov: dict[str, Any], *,
                         reuse: dict[str, np.ndarray] | None = None, reuse_ids: dict[str, str] | None = None,
                         extra_parents: list[str] | None = None, extra_result: dict[str, Any] | None = None
                         ) -> dict[str, Any]:
    from ..music.pipeline import render_piece

    sr = app.settings.sample_rate
    lo, hi = 0.12, 0.85

    def on_progress(f: float, msg: str) -> None:
        job.progress_threadsafe(lo + (hi - lo) * f, msg)

    piece = await job.run_in_thread(lambda: render_piece(arrangement, sample_rate=sr, soundfont=app.settings.soundfont,
                                                         progress=on_progress, reuse_stems=reuse))
    soundfont = base_prov.get("soundfont")
    await job.progress(0.88, "saving stems")
    stem_ids: dict[str, str] = {}
    for name, audio in piece.stems.items():
        if reuse_ids and name in reuse_ids:
            stem_ids[name] = reuse_ids[name]  # unchanged stem: the original artifact is reused as-is
            continue
        rec = await job.add_artifact(data=_encode(audio, sr, "wav", base_prov), kind="stem",
                                     media_type=media_type_for("wav"), name=f"stem-{name}.wav", parents=[arr_art.id],
                                     meta={"stem": name, "sample_rate": sr, "duration_s": round(len(audio) / sr, 3)},
                                     provenance=base_prov)
        stem_ids[name] = rec.id
    midi = await job.add_artifact(data=piece.midi, kind="midi", media_type="audio/midi", name="arrangement.mid",
                                  parents=[arr_art.id], provenance=base_prov)
    await job.progress(0.93, "saving the mix")
    mix_meta = {"arrangement_id": arr_art.id, "stems": stem_ids, "midi_id": midi.id, "sample_rate": sr,
                "duration_s": round(len(piece.mix) / sr, 3), "loudness": piece.master_stats,
                "bpm": arrangement.bpm, "key": _key_name(arrangement), "params": resolved.to_dict()}
    mix = await job.add_artifact(data=_encode(piece.mix, sr, fmt, base_prov), kind="audio",
                                 media_type=media_type_for(fmt), name=f"mix.{fmt}",
                                 parents=[*(extra_parents or []), *stem_ids.values(), midi.id],
                                 meta=mix_meta, provenance=base_prov)
    await job.progress(0.97, "drawing the waveform")
    from ..music.waveform import waveform_png

    png = await job.run_in_thread(lambda: waveform_png(piece.mix, sr, title=f"{mix.name} ({mix.id})"))
    wave = await job.add_artifact(data=png, kind="image", media_type="image/png", name="waveform.png",
                                  parents=[mix.id], provenance=base_prov)
    return {
        "backend": "composer",
        "mix_artifact_id": mix.id,
        "mix_uri": f"echotune://artifacts/{mix.id}/content",
        "stems": stem_ids,
        "midi_artifact_id": midi.id,
        "arrangement_artifact_id": arr_art.id,
        "waveform_artifact_id": wave.id,
        "duration_s": mix_meta["duration_s"],
        "bpm": arrangement.bpm,
        "key": mix_meta["key"],
        "loudness": piece.master_stats,
        "parameters": resolved.to_dict(),
        "sections": [_section_dict(s) for s in getattr(arrangement, "sections", [])],
        "soundfont": soundfont,
        **(extra_result or {}),
    }


async def _rerender(app: App, job: JobContext, mix: ArtifactRecord, arrangement: Any, resolved: Any, *,
                    changed: set[str], output_format: str, note: dict[str, Any]) -> dict[str, Any]:
    owner = job.owner
    await job.progress(0.02, "loading the unchanged stems")
    reuse: dict[str, np.ndarray] = {}
    reuse_ids: dict[str, str] = {}
    for name, art_id in (mix.meta.get("stems") or {}).items():
        if name in changed:
            continue
        rec = await app.artifacts.get(owner, art_id)
        data = await app.artifacts.read(rec)
        reuse[name] = decode_audio(data, max_seconds=1e9, what=rec.name).samples
        reuse_ids[name] = art_id
    soundfont = _soundfont_record(app)
    base_prov = {"tool": job.job.tool, "backend": "composer", "model": COMPOSER_MODEL, "soundfont": soundfont,
                 "prompt": mix.provenance.get("prompt") if mix.provenance else None,
                 "parameters": {**resolved.to_dict(), **note}, "seed": note.get("seed")}
    arr_art = await job.add_artifact(data=arrangement.to_json().encode(), kind="arrangement",
                                     media_type="application/json", name="arrangement.json",
                                     parents=[mix.meta["arrangement_id"]], provenance=base_prov)
    return await _finish_render(app, job, arrangement, resolved, output_format, arr_art, base_prov,
                                reuse=reuse, reuse_ids=reuse_ids, extra_parents=[mix.id],
                                extra_result={"derived_from": mix.id, **note})


async def _load_piece(app: App, owner: str, ref: str) -> tuple[ArtifactRecord, Any, Any]:
    from ..music.composer import Arrangement

    mix = await app.artifacts.resolve(owner, ref)
    arr_id = mix.meta.get("arrangement_id")
    if mix.kind != "audio" or not arr_id:
        raise BadInput("artifact", f"{mix.id} is a {mix.kind} artifact without an arrangement",
                       "the mix artifact (mix_artifact_id) returned by generate_music, regenerate_stem or add_stem")
    arr_rec = await app.artifacts.get(owner, arr_id)
    arrangement = Arrangement.from_json((await app.artifacts.read(arr_rec)).decode())
    resolved = music_params.ResolvedParams.from_dict(mix.meta["params"])
    return mix, arrangement, resolved


@dataclass
class Conditioning:
    """What MusicGen is told, and what became of each control."""

    prompt: str  # the exact text MusicGen reads
    applied: dict[str, dict[str, Any]]
    not_applied: dict[str, dict[str, Any]]
    left_to_model: list[str]

    def parameters(self, resolved: Any) -> dict[str, Any]:
        """The piece's parameters as far as they were really applied (no composer defaults)."""
        return {"prompt": resolved.prompt, "prompt_sent": self.prompt, "duration_s": resolved.duration_s,
                "seed": resolved.seed, **{k: v["value"] for k, v in self.applied.items()}}


def _musicgen_conditioning(prompt: str, resolved: Any, explicit: dict[str, Any]) -> Conditioning:
    """Fold the explicit controls MusicGen can take from text into its prompt; say what happened to each.

    MusicGen is conditioned on text alone (as its users write it: 'lofi, calm, 85 bpm, A minor, with
    piano'). A control given as an argument is appended unless the prompt already says the same; a
    control the prompt names is applied by the prompt itself; structure has no text form MusicGen
    follows, so it is reported as not applied; controls nobody named are left to the model.
    """
    said = music_params.parse_prompt(prompt)
    applied: dict[str, dict[str, Any]] = {}
    not_applied: dict[str, dict[str, Any]] = {}
    left: list[str] = []
    phrases: list[str] = []
    values = {"genre": resolved.genre, "mood": resolved.mood, "bpm": resolved.bpm, "key": resolved.key,
              "instruments": list(resolved.instruments), "meter": getattr(resolved, "meter", "4/4"),
              "feel": getattr(resolved, "feel", "straight")}
    for name in ("genre", "mood", "bpm", "key", "instruments", "meter", "feel"):
        value = values[name]
        if explicit.get(name) is not None:
            if name == "instruments":
                new = [i for i in value if i not in (said.get("instruments") or [])]
                phrase = f"with {', '.join(new)}" if new else ""
            elif said.get(name) == value:
                phrase = ""
            else:
                phrase = {"bpm": f"{value:g} bpm" if name == "bpm" else "", "meter": f"in {value} time",
                          "feel": f"{value} feel"}.get(name) or str(value)
            if phrase:
                phrases.append(phrase)
                how = f"added to the MusicGen prompt as '{phrase}'"
                if said.get(name) not in (None, value) and name != "instruments":
                    how += f" (the prompt text also says '{said[name]}'; MusicGen reads both)"
            else:
                how = "already named in the prompt text, which MusicGen reads"
            applied[name] = {"value": value, "how": how}
        elif name in resolved.from_text:
            word = resolved.tempo_word if name == "bpm" and resolved.tempo_word else None
            applied[name] = {"value": word or value,
                             "how": "named in the prompt text, which MusicGen reads" if not word else
                                    f"named in the prompt text as '{word}', which MusicGen reads (no exact bpm is imposed)"}
        else:
            left.append(name)
    if explicit.get("structure") is not None:
        not_applied["structure"] = {
            "value": list(resolved.structure),
            "reason": "MusicGen makes one continuous piece from text and cannot follow a section plan; "
                      "use backend=composer for sections"}
    else:
        left.append("structure")
    text = prompt.strip()
    if phrases:
        text = f"{text.rstrip(' ,.;')}, {', '.join(phrases)}"
    return Conditioning(prompt=text, applied=applied, not_applied=not_applied, left_to_model=left)


async def _run_musicgen(app: App, job: JobContext, text: Conditioning, resolved: Any, model: str, fmt: str,
                        continuation: Any = None, tune: Any = None) -> dict[str, Any]:
    from ..engine.musicgen_backend import generate_musicgen

    prompt = text.prompt
    parameters = text.parameters(resolved)

    clip, clip_sr, parents = None, None, []
    if continuation is not None:  # the clip's last 10 s, mono: MusicGen's prompt window
        clip_sr = continuation.audio.sample_rate
        clip = continuation.audio.samples.mean(axis=1)[-10 * clip_sr:].astype(np.float32)
        parents = [continuation.artifact.id] if continuation.artifact is not None else []
    melody_audio = melody_sr = None
    if tune is not None:
        melody_audio, melody_sr = tune.audio.samples.mean(axis=1).astype(np.float32), tune.audio.sample_rate
        parents += [tune.artifact.id] if tune.artifact is not None else []

    sr_holder: dict[str, Any] = {}

    async def on_progress(fraction: float, message: str) -> None:
        await job.progress(0.05 + 0.85 * fraction, message)

    async def on_preview(audio: np.ndarray, sample_rate: int) -> None:
        sr_holder["previews"] = sr_holder.get("previews", 0) + 1
        preview_prov = {"tool": "generate_music", "backend": "musicgen", "prompt": prompt,
                        "model": {"model_id": model, "backend": "musicgen",
                                  "weights_license": "CC-BY-NC-4.0"},  # every MusicGen checkpoint's licence
                        "parameters": parameters, "seed": resolved.seed}
        await job.add_artifact(data=_encode(audio, sample_rate, "ogg", preview_prov), kind="preview",
                               media_type=media_type_for("ogg"), name=f"preview-{sr_holder['previews']}.ogg",
                               meta={"seconds": round(len(audio) / sample_rate, 2)},
                               provenance=complete_provenance(preview_prov, app.settings))

    try:
        res = await job.until_cancelled(generate_musicgen(  # cancel_job ends it even while the engine is silent
            prompt=prompt, duration_s=resolved.duration_s, model=model, seed=resolved.seed, temperature=1.0, top_k=250,
            top_p=0.0, guidance_scale=3.0, melody=melody_audio, melody_sr=melody_sr, continuation=clip,
            continuation_sr=clip_sr, on_progress=on_progress, on_preview=on_preview, settings=app.settings))
    except (FileNotFoundError, LookupError, RuntimeError) as exc:  # RuntimeError: the engine's own report
        raise JobFailed(str(exc)) from exc
    model_info = {"model_id": res.model_id, "backend": "musicgen", "weights_revision": res.weights_revision,
                  "weights_license": res.weights_license, "device": res.device, "reason": res.model_reason,
                  "engine_retries": res.engine_retries}  # Ray engine: re-sent once when its replica died
    prov_fields = {"tool": "generate_music", "backend": "musicgen", "model": model_info,
                   "prompt": prompt, "parameters": parameters, "not_applied": text.not_applied,
                   "seed": resolved.seed}
    if continuation is not None:
        prov_fields["input"] = continuation.source  # the continued clip, as separate_stems records its input
    if tune is not None:
        prov_fields["melody_input"] = tune.source
    prov = complete_provenance(prov_fields, app.settings)
    from ..music.master import mix_and_master

    mix, stats = await job.run_in_thread(lambda: mix_and_master({"mix": res.audio}, res.sample_rate))
    art = await job.add_artifact(data=_encode(mix, res.sample_rate, fmt, prov), kind="audio",
                                 media_type=media_type_for(fmt), name=f"mix.{fmt}",
                                 meta={"sample_rate": res.sample_rate, "duration_s": round(len(mix) / res.sample_rate, 3),
                                       "loudness": stats, "params": parameters,
                                       "continued_seconds": round(len(clip) / clip_sr, 3) if clip is not None else 0},
                                 provenance=prov, license=None, parents=parents)
    return {"backend": "musicgen", "mix_artifact_id": art.id, "mix_uri": f"echotune://artifacts/{art.id}/content",
            "model": model_info, "loudness": stats, "prompt_sent": prompt, "parameters": parameters,
            "applied": text.applied, "not_applied": text.not_applied, "left_to_model": text.left_to_model}


# -- helpers ------------------------------------------------------------------------------------------
def _with_parts(interpreted: dict[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    """The interpretation plus what limiting the parts did (stems left out or re-voiced), when it did."""
    parts = out.get("parts")
    if not parts:
        return interpreted
    inst = dict(interpreted.get("instruments") or {})
    done = []
    if parts.get("left_out"):
        done.append(f"stems left out: {', '.join(parts['left_out'])}")
    if parts.get("reprogrammed"):
        done.append("re-voiced: " + ", ".join(f"{k} {v}" for k, v in parts["reprogrammed"].items()))
    inst["note"] = "; ".join(x for x in (inst.get("note"), *done) if x)
    return {**interpreted, "instruments": inst}


def _encode(audio: np.ndarray, sr: int, fmt: str, provenance: dict[str, Any]) -> bytes:
    """Encode with the generator and licence written into the file's own tags (WAV INFO / Vorbis)."""
    from ..music.audio_io import encode_audio

    return encode_audio(audio, sr, fmt, file_tags(provenance, None))

def _key_name(arrangement: Any) -> str:
    key = getattr(arrangement, "key", None)
    if isinstance(key, str):
        return key
    if hasattr(arrangement, "key_name"):
        kn = arrangement.key_name
        return kn() if callable(kn) else kn
    return str(key)


def _section_dict(section: Any) -> dict[str, Any]:
    if isinstance(section, dict):
        return section
    return {k: getattr(section, k) for k in ("name", "start_s", "end_s", "energy") if hasattr(section, k)}


async def _attach_inline_preview(app: App, owner: str, result: CallToolResult) -> None:
    """Inline a short OGG clip (< 1 MiB) when the caller asked and a preview exists."""
    data = result.structured_content or {}
    preview_id = (data.get("result") or {}).get("preview_artifact_id")
    if not preview_id:
        preview = next((a for a in data.get("artifacts", []) if a.get("kind") == "preview"), None)
        preview_id = preview and preview["artifact_id"]
    if not preview_id:
        return
    rec = await app.artifacts.get(owner, preview_id)
    if rec.size >= 1024 * 1024:
        return
    blob = await app.artifacts.read(rec)
    result.content.append(AudioContent(type="audio", data=base64.b64encode(blob).decode(), mime_type=rec.media_type))


