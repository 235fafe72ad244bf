"""A REAPER project: ``<title>.rpp`` (written with the ``rpp`` package) beside ``audio/`` in one zip.

Unzip and open the .rpp: each stem is a track with one item (the whole WAV from position 0, referenced by
its path relative to the project, so the folder can move); a stem rendered from notes gets a second track
"<stem> (MIDI)" with an in-project MIDI item (960 ticks per quarter note), muted because it has no
instrument yet. Tempo and time signature are the project's (``TEMPO``), sections are project markers.
"""

from __future__ import annotations

import uuid
import zipfile
from typing import Any

import rpp

from .archive import AudioFile, readme, write_text
from .session import Session

MIME = "application/zip"
SUFFIX = "-reaper.zip"
AUDIO_DIR = "audio"
PPQ = 960


def _guid() -> str:
    return "{" + str(uuid.uuid4()).upper() + "}"


def _seconds(x: float) -> str:
    return f"{x:.10f}".rstrip("0").rstrip(".") or "0"


def _midi_source(session: Session, f: AudioFile) -> rpp.Element:
    """In-project MIDI events: ``E <delta ticks> <status> <data1> <data2>`` (hex), ticks in quarter notes."""
    part = f.track.part
    assert part is not None
    ch = 9 if part.is_drum else 0
    events: list[tuple[int, int, int, int, int]] = []  # (tick, order, status, d1, d2): offs before ons
    for start, end, pitch, vel in part.notes:
        on = round(session.beats(start) * PPQ)
        off = max(on + 1, round(session.beats(end) * PPQ))
        events.append((on, 1, 0x90 | ch, int(pitch), max(1, min(127, int(vel)))))
        events.append((off, 0, 0x80 | ch, int(pitch), 0))
    events.sort()
    src = rpp.Element("SOURCE", ["MIDI"], [["HASDATA", "1", str(PPQ), "QN"]])
    last = 0
    for tick, _, status, d1, d2 in events:
        src.append(["E", str(tick - last), f"{status:02x}", f"{d1:02x}", f"{d2:02x}"])
        last = tick
    end_tick = round(session.beats(f.duration_s) * PPQ)
    src.append(["E", str(max(0, end_tick - last)), f"{0xB0 | ch:02x}", "7b", "00"])  # all notes off at the end
    return src


def _track(name: str, item_name: str, length_s: float, source: rpp.Element, *, muted: bool, channels: int) -> rpp.Element:
    item = rpp.Element("ITEM", [], [["POSITION", "0"], ["LENGTH", _seconds(length_s)], ["LOOP", "0"],
                                    ["NAME", item_name], ["IGUID", _guid()], source])
    return rpp.Element("TRACK", [_guid()], [["NAME", name], ["VOLPAN", "1", "0", "-1", "-1", "1"],
                                            ["MUTESOLO", "1" if muted else "0", "0", "0"],
                                            ["NCHAN", str(max(2, channels))], item])


def project_rpp(session: Session, files: list[AudioFile]) -> str:
    num, den = session.time_signature
    sr = files[0].sample_rate if files else 44100
    root = rpp.Element("REAPER_PROJECT", ["0.1", "6.0/echotune", "0"], [
        ["TEMPO", _seconds(float(session.bpm or 120.0)), str(num), str(den)],
        ["SAMPLERATE", str(sr), "0", "0"],
    ])
    for i, m in enumerate(session.markers, start=1):
        root.append(["MARKER", str(i), _seconds(m.time_s), m.name, "0"])
    for f in files:
        wave = rpp.Element("SOURCE", ["WAVE"], [["FILE", f.path]])
        root.append(_track(f.track.name, f.track.name, f.duration_s, wave, muted=False, channels=f.channels))
        if f.track.part is not None:
            root.append(_track(f"{f.track.name} (MIDI)", f"{f.track.name} (MIDI)", f.duration_s,
                               _midi_source(session, f), muted=True, channels=2))
    return rpp.dumps(root)


def project_name(session: Session) -> str:
    from .session import file_slug

    return file_slug(session.title) + ".rpp"


def write(zf: zipfile.ZipFile, session: Session, files: list[AudioFile], licences: dict[str, Any]) -> dict[str, Any]:
    name = project_name(session)
    write_text(zf, name, project_rpp(session, files))
    write_text(zf, "README.txt", readme(session, files, licences, [
        (name, "the REAPER project (tracks, items, tempo, time signature, markers; MIDI items in the project)")],
        f"Unzip, then open {name} in REAPER; the audio is referenced relative to it under {AUDIO_DIR}/."))
    return {"project_file": name, "tracks": len(files) + sum(1 for f in files if f.track.part is not None)}
