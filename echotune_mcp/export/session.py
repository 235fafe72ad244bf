"""The DAW session every export format writes: tracks, their audio and notes, tempo, meter, key, markers.

One model, filled from our artifacts (``collect``), so the three formats (DAWproject, REAPER, a stems zip)
always agree on what a piece is: the same tracks in the same order, the same sample-aligned audio files,
the same tempo and section markers. What the session could not know (the tempo of a MusicGen piece or of a
separated song) is estimated from the audio and says so in ``*_source``; nothing is invented silently.

Accepted sources (owner-scoped: another principal's artifact or job is simply not found):

* a composer piece: the mix of ``generate_music`` / ``regenerate_stem`` / ``add_stem`` (its stems, each with
  the notes it was rendered from, the arrangement's tempo, meter, key and form sections);
* a separation: the stem-set of ``separate_stems`` (its stems, audio only; no sections);
* any other audio artifact (a MusicGen piece, a remix, an upload, a single stem): one audio track;
* a job id of any of those tools: its result's mix or stem-set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import BadInput, NotFound
from ..storage.records import ArtifactRecord, JobStatus

if TYPE_CHECKING:
    from ..app import App

Note = tuple[float, float, int, int]  # (start_s, end_s, pitch, velocity 1..127), as the composer writes them

SOURCE_HELP = ("a mix from generate_music / regenerate_stem / add_stem, a stem-set from separate_stems, any "
               "other audio artifact (MusicGen piece, remix, upload, stem), or the job id of one of those tools")
JOB_RESULT_KEYS = {"generate_music": "mix_artifact_id", "regenerate_stem": "mix_artifact_id",
                   "add_stem": "mix_artifact_id", "remix": "mix_artifact_id",
                   "separate_stems": "stem_set_artifact_id"}
STEM_SET = "stem-set"


@dataclass
class Part:
    """The note data a stem was rendered from (composer stems only)."""

    notes: list[Note]
    program: int
    is_drum: bool
    midi: bytes  # this part alone as a Standard MIDI File (conductor track + the part)


@dataclass
class Track:
    name: str  # unique within the session and safe as a file name
    record: ArtifactRecord  # the audio artifact exported for this track
    role: str  # the composer's role (drums, bass, lead, ...), "stem" for a separation, "mix" for audio only
    part: Part | None = None


@dataclass
class Marker:
    name: str
    time_s: float


@dataclass
class Session:
    kind: str  # composer | separation | audio
    title: str
    source: ArtifactRecord  # what the caller named (mix, stem-set or audio)
    tracks: list[Track]
    bpm: float | None = None
    bpm_source: str = ""
    time_signature: tuple[int, int] = (4, 4)
    meter_source: str = ""
    key: str | None = None
    key_source: str = ""
    markers: list[Marker] = field(default_factory=list)
    extra_parents: list[str] = field(default_factory=list)  # arrangement, MIDI, separation input
    notes: list[str] = field(default_factory=list)  # what was assumed or left out, for the result

    @property
    def parents(self) -> list[str]:
        ids = [self.source.id, *(t.record.id for t in self.tracks), *self.extra_parents]
        return list(dict.fromkeys(ids))

    def beats(self, seconds: float) -> float:
        """Seconds to quarter-note beats at the session tempo (constant: the composer has one tempo)."""
        return seconds * float(self.bpm or 120.0) / 60.0


def safe_name(name: str, taken: set[str]) -> str:
    """A file-system- and DAW-safe track/file name, unique among ``taken`` (which it joins)."""
    base = re.sub(r"[^A-Za-z0-9._ -]+", "_", name).strip(" ._-")[:48] or "track"
    out, n = base, 2
    while out.lower() in taken:
        out, n = f"{base}-{n}", n + 1
    taken.add(out.lower())
    return out


def file_slug(title: str, limit: int = 60) -> str:
    """A short lower-case file name from a title: 'Funk, 110 bpm in E minor' -> 'funk-110-bpm-in-e-minor'."""
    words = re.findall(r"[a-z0-9]+", title.lower().replace("#", "sharp"))
    out = ""
    for w in words:
        if len(out) + len(w) + 1 > limit:
            break
        out = f"{out}-{w}" if out else w
    return out or "echotune-export"


async def resolve_source(app: App, owner: str, ref: str) -> ArtifactRecord:
    """The artifact ``ref`` names: an artifact id/URI, or a finished job of a tool whose result we export."""
    ref = ref.strip()
    if ref.startswith("job_"):
        try:
            job = await app.jobs.get(owner, ref)
        except NotFound:
            raise NotFound("job", ref, "call list_jobs to see the job ids you own") from None
        key = JOB_RESULT_KEYS.get(job.tool)
        if key is None:
            raise BadInput("source", f"job {job.id} is a {job.tool} job, which makes nothing to export",
                           SOURCE_HELP)
        if job.status != JobStatus.succeeded:
            raise BadInput("source", f"job {job.id} is {job.status.value}, not succeeded"
                           + ("; wait for it with get_job" if not job.status.terminal else ""), SOURCE_HELP)
        art_id = (job.result or {}).get(key)
        if not art_id:
            raise BadInput("source", f"job {job.id} has no {key} in its result", SOURCE_HELP)
        return await app.artifacts.get(owner, art_id)
    return await app.artifacts.resolve(owner, ref)


async def _part(app: App, owner: str, art_id: str, what: str, source: ArtifactRecord) -> ArtifactRecord:
    """A part the source lists; a deleted one is the source's problem, said about ``source``."""
    try:
        return await app.artifacts.get(owner, art_id)
    except NotFound:
        raise BadInput("source", f"{what} ({art_id}) of {source.id} was deleted, so it cannot be exported whole",
                       "a piece whose parts still exist; export a single stem artifact by its id instead") from None


async def _existing(app: App, owner: str, ids: list[str], notes: list[str]) -> list[str]:
    """Lineage-only parents (the MIDI file, a separation's input) that still exist; a deleted one is noted
    (its tombstone still binds the stems made from it, which are parents themselves)."""
    out = []
    for art_id in ids:
        if await app.storage.artifacts.get(owner, art_id) is not None:
            out.append(art_id)
        else:
            notes.append(f"artifact {art_id} (part of the source's lineage) was deleted; not a parent of the export")
    return out


def _is_audio(rec: ArtifactRecord) -> bool:
    return rec.media_type.startswith("audio/") and rec.media_type != "audio/midi"


async def collect(app: App, owner: str, source: ArtifactRecord) -> Session:
    """The session for ``source`` (see the module docstring for what is accepted)."""
    meta = source.meta or {}
    if source.kind == "json" and meta.get("type") == STEM_SET:
        return await _separation(app, owner, source)
    if _is_audio(source) and meta.get("arrangement_id") and isinstance(meta.get("stems"), dict):
        return await _composer(app, owner, source)
    if _is_audio(source):
        return _audio_only(source)
    raise BadInput("source", f"{source.id} is a {source.kind} artifact ({source.media_type})", SOURCE_HELP)


async def _composer(app: App, owner: str, mix: ArtifactRecord) -> Session:
    from ..music.composer import Arrangement

    meta = mix.meta
    arr_rec = await _part(app, owner, meta["arrangement_id"], "its arrangement", mix)
    try:
        arrangement = Arrangement.from_json((await app.artifacts.read(arr_rec)).decode())
    except (ValueError, KeyError, TypeError) as exc:
        raise BadInput("source", f"the arrangement {arr_rec.id} of {mix.id} cannot be read ({exc})",
                       SOURCE_HELP) from None
    by_name = {t.name: t for t in arrangement.tracks}
    taken: set[str] = set()
    tracks: list[Track] = []
    notes: list[str] = []
    for stem, art_id in meta["stems"].items():
        rec = await _part(app, owner, art_id, f"its stem {stem!r}", mix)
        t = by_name.get(stem)
        part = None
        if t is not None:
            part = Part(notes=list(t.notes), program=int(t.program), is_drum=bool(t.is_drum),
                        midi=part_midi(arrangement, t))
        else:
            notes.append(f"stem {stem!r} has no part in the arrangement; exported as audio only")
        tracks.append(Track(name=safe_name(stem, taken), record=rec, role=t.role if t else "stem", part=part))
    num, den = (int(x) for x in arrangement.time_signature)
    sections = [Marker(name=s.name, time_s=float(s.start_s)) for s in arrangement.sections]
    title = _title(mix, f"{arrangement.genre} {arrangement.mood} in {arrangement.key.name}")
    extra = [arr_rec.id] + await _existing(app, owner, [meta["midi_id"]] if meta.get("midi_id") else [], notes)
    return Session(kind="composer", title=title, source=mix, tracks=tracks, bpm=float(arrangement.bpm),
                   bpm_source="the composer's arrangement", time_signature=(num, den),
                   meter_source="the composer's arrangement", key=arrangement.key.name,
                   key_source="the composer's arrangement", markers=sections, extra_parents=extra, notes=notes)


def part_midi(arrangement: Any, track: Any) -> bytes:
    """One part as a Standard MIDI File: the arrangement's conductor (tempo, meter, key, section markers)
    and this track, written by the same code as the piece's own MIDI so the two agree note for note."""
    import copy

    from ..music.midi import arrangement_to_midi_bytes

    one = copy.copy(arrangement)
    one.tracks = [track]
    return arrangement_to_midi_bytes(one)


async def _separation(app: App, owner: str, stem_set: ArtifactRecord) -> Session:
    taken: set[str] = set()
    tracks = []
    for stem, art_id in (stem_set.meta.get("stems") or {}).items():
        rec = await _part(app, owner, art_id, f"its stem {stem!r}", stem_set)
        tracks.append(Track(name=safe_name(stem, taken), record=rec, role="stem"))
    if not tracks:
        raise BadInput("source", f"the stem-set {stem_set.id} lists no stems", SOURCE_HELP)
    stem_ids = {t.record.id for t in tracks}
    notes = ["a separation has no section markers and no MIDI"]
    inputs = await _existing(app, owner, [p for p in stem_set.parents if p not in stem_ids], notes)
    return Session(kind="separation", title=_title(stem_set, f"stems ({stem_set.meta.get('model', 'separation')})"),
                   source=stem_set, tracks=tracks, extra_parents=inputs, notes=notes)


def _audio_only(rec: ArtifactRecord) -> Session:
    stem = (rec.meta or {}).get("stem")
    name = safe_name(str(stem) if stem else rec.name.rsplit(".", 1)[0] or "audio", set())
    return Session(kind="audio", title=_title(rec, rec.name.rsplit(".", 1)[0]), source=rec,
                   tracks=[Track(name=name, record=rec, role="stem" if stem else "mix")],
                   notes=["audio only: one track, no MIDI and no section markers"])


def _title(rec: ArtifactRecord, fallback: str) -> str:
    prompt = (rec.provenance or {}).get("prompt")
    text = prompt if isinstance(prompt, str) and prompt.strip() else fallback
    return " ".join(text.split())[:120]
