"""DAWproject 1.0 (bitwig/dawproject): a zip of ``project.xml`` + ``metadata.xml`` + the audio under ``audio/``.

Valid against the format's XSDs (``Project.xsd``, ``MetaData.xsd``; the tests validate every export). The
arrangement is in beats at the piece's one tempo. Per stem: an audio track whose clip is the whole stem
from time 0, warped seconds -> beats by two warp points (how Bitwig itself writes audio, so a tempo change
in the DAW stretches it in time); and where the stem was rendered from notes, a note track beside it
("<stem> (MIDI)", muted: it has no instrument yet, and the audio already sounds; unmute it and pick a sound
to replace the rendered audio). Section markers are cue markers. Every channel goes to a master track.
Bitwig, Studio One and Cubase import this structure (tracks, audio clips, note clips, tempo, signature,
markers); device/plug-in state is not exported (our sound is in the audio).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
import zipfile
from typing import Any

from .archive import AudioFile, readme, write_text
from .session import Session

VERSION = "1.0"
MIME = "application/zip"
SUFFIX = ".dawproject"
AUDIO_DIR = "audio"
COLOURS = {"drums": "#d9534f", "percussion": "#e07b39", "bass": "#5b8def", "chords": "#9b6bd3", "pad": "#6cc4a1",
           "lead": "#f0c04d", "arpeggio": "#4fc3d9", "counter": "#c9a26b", "texture": "#8fa3b0", "stem": "#7e8c9a",
           "mix": "#a0a0a0"}


class _Ids:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> str:
        self.n += 1
        return f"id{self.n}"


def _num(x: float) -> str:
    """Doubles as the reference implementation writes them: plain decimal, no exponent."""
    return f"{x:.6f}".rstrip("0").rstrip(".") if x != int(x) else f"{int(x)}.0"


def _channel(parent: ET.Element, ids: _Ids, *, role: str, channels: int, destination: str | None,
             muted: bool = False) -> ET.Element:
    ch = ET.SubElement(parent, "Channel", {"id": ids(), "role": role, "audioChannels": str(channels),
                                           "solo": "false", **({"destination": destination} if destination else {})})
    # sequence order is fixed by the XSD: Devices?, Mute?, Pan?, Sends?, Volume?
    ET.SubElement(ch, "Mute", {"id": ids(), "name": "Mute", "value": "true" if muted else "false"})
    ET.SubElement(ch, "Pan", {"id": ids(), "name": "Pan", "unit": "normalized", "min": "0.0", "max": "1.0",
                              "value": "0.5"})
    ET.SubElement(ch, "Volume", {"id": ids(), "name": "Volume", "unit": "linear", "min": "0.0", "max": "2.0",
                                 "value": "1.0"})
    return ch


def project_xml(session: Session, files: list[AudioFile]) -> bytes:
    from ..artifacts import package_version

    ids = _Ids()
    root = ET.Element("Project", {"version": VERSION})
    ET.SubElement(root, "Application", {"name": "EchoTune MCP", "version": package_version()})
    transport = ET.SubElement(root, "Transport")
    ET.SubElement(transport, "Tempo", {"id": ids(), "name": "Tempo", "unit": "bpm", "min": "20.0", "max": "999.0",
                                       "value": _num(float(session.bpm or 120.0))})
    num, den = session.time_signature
    ET.SubElement(transport, "TimeSignature", {"id": ids(), "name": "Time Signature", "numerator": str(num),
                                               "denominator": str(den)})
    structure = ET.SubElement(root, "Structure")
    master_track = ET.Element("Track", {"id": ids(), "name": "Master", "loaded": "true"})
    master = _channel(master_track, ids, role="master", channels=2, destination=None)
    lanes_of: list[tuple[str, AudioFile, bool]] = []  # (track id, file, is the note track)
    for f in files:
        colour = COLOURS.get(f.track.role, COLOURS["stem"])
        tid = ids()
        track = ET.SubElement(structure, "Track", {"id": tid, "name": f.track.name, "contentType": "audio",
                                                   "loaded": "true", "color": colour})
        _channel(track, ids, role="regular", channels=f.channels, destination=master.get("id"))
        lanes_of.append((tid, f, False))
        if f.track.part is not None:
            nid = ids()
            ntrack = ET.SubElement(structure, "Track", {
                "id": nid, "name": f"{f.track.name} (MIDI)", "contentType": "notes", "loaded": "true",
                "color": colour, "comment": "the notes the audio track was rendered from; muted (no instrument): "
                                            "unmute and choose a sound to replace the audio"})
            _channel(ntrack, ids, role="regular", channels=2, destination=master.get("id"), muted=True)
            lanes_of.append((nid, f, True))
    structure.append(master_track)

    arrangement = ET.SubElement(root, "Arrangement", {"id": ids()})
    lanes = ET.SubElement(arrangement, "Lanes", {"id": ids(), "timeUnit": "beats"})
    for tid, f, is_notes in lanes_of:
        track_lanes = ET.SubElement(lanes, "Lanes", {"id": ids(), "track": tid})
        clips = ET.SubElement(track_lanes, "Clips", {"id": ids()})
        length_beats = session.beats(f.duration_s)
        clip = ET.SubElement(clips, "Clip", {"name": f.track.name, "time": "0.0", "duration": _num(length_beats),
                                             "playStart": "0.0"})
        if is_notes:
            _notes(clip, ids, session, f)
        else:
            clip.set("contentTimeUnit", "beats")
            warps = ET.SubElement(clip, "Warps", {"id": ids(), "timeUnit": "beats", "contentTimeUnit": "seconds"})
            audio = ET.SubElement(warps, "Audio", {"id": ids(), "timeUnit": "seconds", "channels": str(f.channels),
                                                   "sampleRate": str(f.sample_rate), "duration": _num(f.duration_s)})
            ET.SubElement(audio, "File", {"path": f.path})
            ET.SubElement(warps, "Warp", {"time": "0.0", "contentTime": "0.0"})
            ET.SubElement(warps, "Warp", {"time": _num(length_beats), "contentTime": _num(f.duration_s)})
    if session.markers:
        markers = ET.SubElement(arrangement, "Markers", {"id": ids(), "timeUnit": "beats"})
        for m in session.markers:
            ET.SubElement(markers, "Marker", {"name": m.name, "time": _num(session.beats(m.time_s))})
    ET.indent(root, space=" ")
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _notes(clip: ET.Element, ids: _Ids, session: Session, f: AudioFile) -> None:
    part = f.track.part
    assert part is not None
    notes = ET.SubElement(clip, "Notes", {"id": ids()})
    channel = "9" if part.is_drum else "0"
    for start, end, pitch, vel in sorted(part.notes, key=lambda n: (n[0], n[2])):
        begin = session.beats(start)
        ET.SubElement(notes, "Note", {"time": _num(begin), "duration": _num(max(session.beats(end) - begin, 1e-4)),
                                      "channel": channel, "key": str(int(pitch)),
                                      "vel": _num(max(1, min(127, int(vel))) / 127.0)})


def metadata_xml(session: Session, licences: dict[str, Any]) -> bytes:
    root = ET.Element("MetaData")
    ET.SubElement(root, "Title").text = session.title
    ET.SubElement(root, "Producer").text = "EchoTune MCP"
    genre = (session.source.meta or {}).get("params", {}).get("genre") if session.kind == "composer" else None
    if genre:
        ET.SubElement(root, "Genre").text = str(genre)
    ET.SubElement(root, "Copyright").text = "Licence: " + licences["export_license_text"]
    num, den = session.time_signature
    ET.SubElement(root, "Comment").text = (
        f"Exported from EchoTune artifact {session.source.id}: {session.bpm:g} bpm ({session.bpm_source}), {num}/{den}, "
        f"key {session.key or 'unknown'} ({session.key_source or 'not known'}); provenance and the licence of each "
        "file are in README.txt")
    ET.indent(root, space=" ")
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def write(zf: zipfile.ZipFile, session: Session, files: list[AudioFile], licences: dict[str, Any]) -> dict[str, Any]:
    zf.writestr("project.xml", project_xml(session, files), compress_type=zipfile.ZIP_DEFLATED)
    zf.writestr("metadata.xml", metadata_xml(session, licences), compress_type=zipfile.ZIP_DEFLATED)
    write_text(zf, "README.txt", readme(session, files, licences, [
        ("project.xml", "the DAWproject 1.0 project (tracks, clips, notes, tempo, time signature, markers)"),
        ("metadata.xml", "title and licence")],
        "Open this .dawproject file in Bitwig Studio, Studio One or Cubase (DAWproject 1.0)."))
    return {"project_file": "project.xml",
            "tracks": len(files) + sum(1 for f in files if f.track.part is not None)}
