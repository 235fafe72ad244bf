"""A stems zip for any DAW: ``stems/<track>.wav`` (same rate, same length, all from time 0), ``midi/<part>.mid``
where a stem was rendered from notes, ``tempo_map.json`` (tempo, meter, key, markers in seconds, beats and
bars, and every file) and ``README.txt`` (the provenance and licence of each file).

Drop the WAVs at the start of a session at the tempo in the map and they line up sample for sample.
"""

from __future__ import annotations

import zipfile
from typing import Any

from .archive import AudioFile, readme, tempo_map, write_json, write_text
from .session import Session

MIME = "application/zip"
SUFFIX = "-stems.zip"
AUDIO_DIR = "stems"


def write(zf: zipfile.ZipFile, session: Session, files: list[AudioFile], licences: dict[str, Any]) -> dict[str, Any]:
    extra: list[tuple[str, str]] = []
    midi_files = []
    for f in files:
        if f.track.part is not None:
            name = f"midi/{f.track.name}.mid"
            zf.writestr(name, f.track.part.midi, compress_type=zipfile.ZIP_DEFLATED)
            midi_files.append(name)
            extra.append((name, f"the notes {f.path} was rendered from (Standard MIDI File with the piece's tempo, "
                                f"meter, key and section markers); made by the composer like the audio"))
    doc = tempo_map(session, files)
    doc["midi_files"] = midi_files
    write_json(zf, "tempo_map.json", doc)
    extra.append(("tempo_map.json", "tempo, time signature, key, section markers and every file"))
    write_text(zf, "README.txt", readme(session, files, licences, extra,
                                        "Sample-aligned stems: every WAV starts at time 0, has the same sample rate "
                                        "and the same length; import them at the start of a session at the tempo "
                                        "below."))
    return {"project_file": "tempo_map.json", "tracks": len(files), "midi_files": midi_files}
