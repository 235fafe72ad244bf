"""Listening-history files: detect the format, then stream the plays out of it in bounded memory.

Five formats, as their services write them:

- ``spotify_account``: Spotify's account-data export, ``StreamingHistory_music_*.json``, a JSON array of
  ``{endTime: "YYYY-MM-DD HH:MM" (UTC), artistName, trackName, msPlayed}``.
- ``spotify_extended``: Spotify's extended streaming history, ``Streaming_History_Audio_*.json``, a JSON array of
  ``{ts: ISO-8601 UTC, master_metadata_track_name, master_metadata_album_artist_name,
  master_metadata_album_album_name, spotify_track_uri, ms_played, reason_end, skipped, ...}``; podcast
  episodes, audiobook chapters and private-session plays in it are counted as ignored, not as your music.
- ``listenbrainz``: a ListenBrainz listen export, JSON lines (or a JSON array) of
  ``{listened_at: epoch s, track_metadata: {artist_name, track_name, release_name, additional_info, mbid_mapping}}``.
- ``lastfm_csv``: a Last.fm scrobble CSV, ``artist,album,track,date`` (``31 Jan 2021 14:05`` UTC, ISO 8601 or
  epoch seconds), with or without that header line.
- ``tsv``: tab-separated ``user, item, weight[, timestamp]``, with or without a header line.

Parsing never holds the file: JSON arrays go through ``JsonArrayReader`` (the C JSON scanner on a sliding
window, one element at a time), lines are read with a length cap. Each row becomes an event, an ignored
row (with its reason) or a malformed row (with where and why): nothing of a malformed row is kept. A problem
with the file itself (not the format asked for, broken JSON, not UTF-8) raises ``HistoryFileError``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

MAX_ELEMENT_CHARS = 1 << 20  # one JSON element, line or CSV record of a history file; longer is malformed
CHUNK_CHARS = 1 << 16
HEAD_BYTES = 1 << 16  # how much of a file format detection looks at


@dataclass(frozen=True)
class HistoryFormat:
    name: str
    source: str
    title: str
    shape: str
    container: str  # "json" (an array; listenbrainz also JSON lines) or "text"


FORMATS: dict[str, HistoryFormat] = {f.name: f for f in (
    HistoryFormat("spotify_account", "spotify", "Spotify account-data export (StreamingHistory_music_*.json)",
                  "a JSON array of {endTime, artistName, trackName, msPlayed}", "json"),
    HistoryFormat("spotify_extended", "spotify", "Spotify extended streaming history (Streaming_History_Audio_*.json)",
                  "a JSON array of {ts, master_metadata_track_name, master_metadata_album_artist_name, "
                  "spotify_track_uri, ms_played, reason_end, skipped, ...}", "json"),
    HistoryFormat("listenbrainz", "listenbrainz", "ListenBrainz listen export",
                  "JSON lines, one {listened_at, track_metadata: {artist_name, track_name, ...}} per line", "json"),
    HistoryFormat("lastfm_csv", "lastfm", "Last.fm scrobble CSV", "comma-separated artist,album,track,date rows",
                  "text"),
    HistoryFormat("tsv", "tsv", "tab-separated interactions", "tab-separated user, item, weight[, timestamp] rows",
                  "text"),
)}
FORMAT_NAMES = tuple(FORMATS)


class HistoryFileError(ValueError):
    """The file as a whole cannot be read as the format (wrong format, broken JSON, not UTF-8): nothing is kept."""


class Malformed(ValueError):
    """One row cannot be read; it is counted and reported, never stored."""


class Ignored(Exception):
    """A well-formed row that is not a music play (a podcast episode); counted by reason."""


@dataclass(frozen=True)
class Row:
    """One row of a history file: an ``event``, or else ``ignored``/``malformed`` says why not."""

    where: str
    event: dict[str, Any] | None = None
    ignored: str | None = None
    malformed: str | None = None


def describe(fmt: str) -> str:
    f = FORMATS[fmt]
    return f"{fmt} ({f.title}: {f.shape})"


# -- identity ----------------------------------------------------------------------------------------------
_SPACES = re.compile(r"\s+")


def fold(text: str) -> str:
    """Case-, width- and space-folded text, so "The  Beatles" and "the beatles" are one artist."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text)).strip().casefold()


def name_key(artist: str | None, track: str | None) -> str:
    return f"name:{fold(artist or '')}\x1f{fold(track or '')}"


def dedupe_key(event: dict[str, Any]) -> str:
    """What makes two rows the same play: source, time and track (folded names, or the TSV user and item).

    Spotify's two exports describe the same plays, the account data to the minute and the extended history
    to the second, both by when the play ended: their plays are keyed by the minute and the milliseconds
    played, so importing both (or an overlap of them) stores each play once, and two short plays of one
    track within a minute stay two. Provider ids are left out on purpose: a later export that maps more of
    them must still match the plays an earlier one stored.
    """
    played = event.get("played_at")
    seconds = None if played is None else int(math.floor(played))
    if event["source"] == "tsv":
        what = f"{event.get('external_user') or ''}\x1f{event['item_key']}"
    else:
        what = name_key(event.get("artist"), event.get("track"))
    if event["source"] == "spotify" and seconds is not None:
        seconds -= seconds % 60
        what += f"\x1f{event.get('ms_played')}"
    when = "" if seconds is None else str(seconds)
    return f"{event['source']}\x1e{when}\x1e{what}"


def event_id(owner: str, event: dict[str, Any]) -> str:
    """The stored id: the owner's hash of the dedupe key (so two owners' same play are two documents)."""
    digest = hashlib.sha256(f"{owner}\x1d{dedupe_key(event)}".encode()).hexdigest()
    return f"lev_{digest[:40]}"


# -- field helpers -----------------------------------------------------------------------------------------
def _text(row: dict[str, Any], key: str, *, required: bool = False, what: str | None = None) -> str | None:
    value = row.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise Malformed(f"{what or key} is missing or empty")
        return None
    if not isinstance(value, str):
        raise Malformed(f"{what or key} is {type(value).__name__}, not text")
    if len(value) > 2000:
        raise Malformed(f"{what or key} is longer than 2000 characters")
    return value.strip()


def _ms(row: dict[str, Any], key: str, *, required: bool) -> int | None:
    value = row.get(key)
    if value is None:
        if required:
            raise Malformed(f"{key} is missing")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise Malformed(f"{key} is {value!r}, not a non-negative number of milliseconds")
    return int(value)


_MIN_TS = datetime(1990, 1, 1, tzinfo=UTC).timestamp()
_MAX_TS = datetime(2100, 1, 1, tzinfo=UTC).timestamp()


def _check_epoch(ts: float, what: str) -> float:
    if not (math.isfinite(ts) and _MIN_TS <= ts < _MAX_TS):
        raise Malformed(f"{what} is outside 1990-2100")
    return float(ts)


def _epoch_number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Malformed(f"{what} is {value!r}, not epoch seconds")
    ts = float(value)
    if ts > 1e11:  # milliseconds
        ts /= 1000.0
    return _check_epoch(ts, what)


def parse_time(text: str, what: str) -> float:
    """Epoch seconds (UTC) from the ways these exports write a time; a time without a zone is UTC."""
    raw = text.strip()
    if not raw:
        raise Malformed(f"{what} is empty")
    if re.fullmatch(r"\d{9,13}(\.\d+)?", raw):
        return _epoch_number(float(raw), what)
    for pattern in ("%d %b %Y %H:%M", "%d %b %Y, %H:%M", "%Y-%m-%d %H:%M"):
        try:
            return _check_epoch(datetime.strptime(raw, pattern).replace(tzinfo=UTC).timestamp(), what)
        except ValueError:
            continue
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00") if raw.endswith("Z") else raw)
    except ValueError:
        raise Malformed(f"{what} {raw[:40]!r} is not a time (expected ISO 8601, '31 Jan 2021 14:05' "
                        "or epoch seconds)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return _check_epoch(parsed.timestamp(), what)


def _kind(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "literal"
    return {int: "number", float: "number", str: "string", list: "array"}.get(type(value), type(value).__name__)


def _spotify_uri(value: Any) -> str | None:
    """``spotify:track:ID`` from a URI or an open.spotify.com link; anything else is not kept."""
    if not isinstance(value, str):
        return None
    m = re.fullmatch(r"(?:spotify:track:|https?://open\.spotify\.com/track/)([A-Za-z0-9]{22})(?:\?.*)?", value.strip())
    return f"spotify:track:{m.group(1)}" if m else None


_MBID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _mbid(value: Any) -> str | None:
    return value.lower() if isinstance(value, str) and _MBID.fullmatch(value.lower()) else None


def _event(fmt: str, *, played_at: float | None, track: str | None, artist: str | None, album: str | None = None,
           spotify_uri: str | None = None, recording_mbid: str | None = None, isrc: str | None = None,
           ms_played: int | None = None, skipped: bool | None = None, reason_end: str | None = None,
           external_user: str | None = None, weight: float = 1.0, item_key: str | None = None) -> dict[str, Any]:
    key = item_key or spotify_uri or (f"mbid:{recording_mbid}" if recording_mbid else None) or name_key(artist, track)
    return {"source": FORMATS[fmt].source, "format": fmt, "played_at": played_at, "track": track, "artist": artist,
            "album": album, "item_key": key, "spotify_uri": spotify_uri, "recording_mbid": recording_mbid,
            "isrc": isrc, "ms_played": ms_played, "skipped": skipped, "reason_end": reason_end,
            "external_user": external_user, "weight": weight}


# -- the formats: one row in, one event out ----------------------------------------------------------------
def spotify_account_event(row: Any) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise Malformed(f"is a JSON {_kind(row)}, not an object")
    when = _text(row, "endTime", required=True)
    return _event("spotify_account", played_at=parse_time(when, "endTime"),
                  track=_text(row, "trackName", required=True), artist=_text(row, "artistName", required=True),
                  ms_played=_ms(row, "msPlayed", required=True))


def spotify_extended_event(row: Any) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise Malformed(f"is a JSON {_kind(row)}, not an object")
    when = _text(row, "ts", required=True)
    played_at = parse_time(when, "ts")
    ms_played = _ms(row, "ms_played", required=True)
    if "master_metadata_track_name" not in row:
        raise Malformed("master_metadata_track_name is missing")
    track = _text(row, "master_metadata_track_name")
    if track is None:
        if row.get("episode_name") or row.get("spotify_episode_uri"):
            raise Ignored("podcast episode")
        if row.get("audiobook_title") or row.get("audiobook_uri") or row.get("audiobook_chapter_uri"):
            raise Ignored("audiobook")
        raise Ignored("no track metadata (Spotify left it empty)")
    if row.get("incognito_mode") is True:
        raise Ignored("private session (kept out of your taste, as Spotify does)")
    skipped = row.get("skipped")
    reason = _text(row, "reason_end")
    return _event("spotify_extended", played_at=played_at, track=track,
                  artist=_text(row, "master_metadata_album_artist_name", required=True),
                  album=_text(row, "master_metadata_album_album_name"),
                  spotify_uri=_spotify_uri(row.get("spotify_track_uri")),
                  ms_played=ms_played, skipped=skipped if isinstance(skipped, bool) else None, reason_end=reason)


def listenbrainz_event(row: Any) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise Malformed(f"is a JSON {_kind(row)}, not an object")
    if "listened_at" not in row:
        raise Malformed("listened_at is missing")
    value = row["listened_at"]
    played_at = parse_time(value, "listened_at") if isinstance(value, str) else _epoch_number(value, "listened_at")
    meta = row.get("track_metadata")
    if not isinstance(meta, dict):
        raise Malformed("track_metadata is missing or not an object")
    info = meta.get("additional_info") if isinstance(meta.get("additional_info"), dict) else {}
    mapping = meta.get("mbid_mapping") if isinstance(meta.get("mbid_mapping"), dict) else {}
    spotify = _spotify_uri(info.get("spotify_id"))
    isrc = info.get("isrc") if isinstance(info.get("isrc"), str) and re.fullmatch(r"[A-Z]{2}[A-Z0-9]{3}\d{7}",
                                                                                  info["isrc"]) else None
    return _event("listenbrainz", played_at=played_at,
                  track=_text(meta, "track_name", required=True, what="track_metadata.track_name"),
                  artist=_text(meta, "artist_name", required=True, what="track_metadata.artist_name"),
                  album=_text(meta, "release_name", what="track_metadata.release_name"), spotify_uri=spotify,
                  recording_mbid=_mbid(mapping.get("recording_mbid")) or _mbid(info.get("recording_mbid")), isrc=isrc)


LASTFM_HEADER = ["artist", "album", "track", "date"]
TSV_HEADER_WORDS = {"user", "user_id", "userid", "item", "item_id", "itemid", "weight", "timestamp", "count"}


def lastfm_event(fields: list[str]) -> dict[str, Any]:
    if len(fields) != 4:
        raise Malformed(f"has {len(fields)} fields, expected 4 (artist,album,track,date)")
    artist, album, track, date = (f.strip() for f in fields)
    if not artist:
        raise Malformed("artist is empty")
    if not track:
        raise Malformed("track is empty")
    if not date:
        raise Malformed("date is empty (a now-playing row has no time)")
    return _event("lastfm_csv", played_at=parse_time(date, "date"), track=track, artist=artist, album=album or None)


def tsv_event(fields: list[str]) -> dict[str, Any]:
    if len(fields) not in (3, 4):
        raise Malformed(f"has {len(fields)} fields, expected 3 or 4 (user, item, weight[, timestamp])")
    user, item, weight_s = (f.strip() for f in fields[:3])
    if not user:
        raise Malformed("user is empty")
    if not item:
        raise Malformed("item is empty")
    if len(user) > 2000 or len(item) > 2000:
        raise Malformed("user or item is longer than 2000 characters")
    try:
        weight = float(weight_s)
    except ValueError:
        raise Malformed(f"weight {weight_s[:40]!r} is not a number") from None
    if not math.isfinite(weight) or weight < 0:
        raise Malformed(f"weight {weight_s[:40]!r} is not a finite number >= 0")
    played_at = parse_time(fields[3], "timestamp") if len(fields) == 4 and fields[3].strip() else None
    return _event("tsv", played_at=played_at, track=None, artist=None, external_user=user, weight=weight,
                  item_key=f"item:{item}")


# -- readers -----------------------------------------------------------------------------------------------
class JsonArrayReader:
    """The elements of one top-level JSON array, read through a sliding window of text.

    Memory is bounded by the largest element (``max_element`` characters; past that the file is refused),
    not by the file. A syntax error anywhere is a ``HistoryFileError`` naming the element and offset.
    """

    _WS = re.compile(r"[ \t\n\r]*")

    def __init__(self, read: Callable[[int], str], *, max_element: int = MAX_ELEMENT_CHARS,
                 chunk: int = CHUNK_CHARS):
        self._read = read
        self._max = max_element
        self._chunk = chunk
        self._buf = ""
        self._pos = 0
        self._offset = 0  # characters dropped from the front of the buffer
        self._eof = False
        self._decoder = json.JSONDecoder()

    def _fill(self) -> bool:
        if self._eof:
            return False
        data = self._read(self._chunk)
        if not data:
            self._eof = True
            return False
        self._offset += self._pos
        self._buf = self._buf[self._pos:] + data
        self._pos = 0
        return True

    def _skip_ws(self) -> str:
        """The next non-space character (not consumed), or "" at the end of the file."""
        while True:
            self._pos = self._WS.match(self._buf, self._pos).end()
            if self._pos < len(self._buf):
                return self._buf[self._pos]
            if not self._fill():
                return ""

    def _fail(self, what: str, index: int) -> HistoryFileError:
        return HistoryFileError(f"invalid JSON {what} (element {index}, character {self._offset + self._pos})")

    def __iter__(self) -> Iterator[Any]:
        first = self._skip_ws()
        if first != "[":
            raise HistoryFileError("is not a JSON array (it does not start with '[')")
        self._pos += 1
        index = 0
        if self._skip_ws() == "]":
            self._pos += 1
        else:
            while True:
                yield self._element(index)
                index += 1
                nxt = self._skip_ws()
                if nxt == ",":
                    self._pos += 1
                    if self._skip_ws() in ("]", ""):
                        raise self._fail("after a comma: expected another element", index)
                    continue
                if nxt == "]":
                    self._pos += 1
                    break
                raise self._fail("after an element: expected ',' or ']'" if nxt else "(the array never ends)", index)
        if self._skip_ws() != "":
            raise self._fail("after the array: the file goes on", index)

    def _element(self, index: int) -> Any:
        while True:
            try:
                value, end = self._decoder.raw_decode(self._buf, self._pos)
            except json.JSONDecodeError as exc:
                if len(self._buf) - self._pos > self._max:
                    raise self._fail(f"or an element longer than {self._max} characters", index) from None
                if self._fill():
                    continue
                raise self._fail(f"({exc.msg})", index) from None
            # a number or literal that ends where the window ends may go on in the next chunk
            if end == len(self._buf) and not isinstance(value, dict | list | str) and self._fill():
                continue
            self._pos = end
            return value


def _bounded_lines(fh: IO[str], counter: dict[str, int]) -> Iterator[str]:
    """Lines of at most ``MAX_ELEMENT_CHARS``; a longer one comes back as a marker ("\\0TOO_LONG") once."""
    while True:
        line = fh.readline(MAX_ELEMENT_CHARS)
        if not line:
            return
        counter["line"] += 1
        if len(line) >= MAX_ELEMENT_CHARS and not line.endswith("\n"):
            while True:  # drop the rest of that line
                more = fh.readline(MAX_ELEMENT_CHARS)
                if not more or more.endswith("\n"):
                    break
            yield "\0TOO_LONG"
            continue
        yield line


def _json_rows(fh: IO[str], convert: Callable[[Any], dict[str, Any]]) -> Iterator[Row]:
    for index, element in enumerate(JsonArrayReader(fh.read)):
        yield _row(f"element {index}", convert, element)


def _jsonl_rows(fh: IO[str], convert: Callable[[Any], dict[str, Any]]) -> Iterator[Row]:
    counter = {"line": 0}
    for line in _bounded_lines(fh, counter):
        where = f"line {counter['line']}"
        if line == "\0TOO_LONG":
            yield Row(where, malformed=f"longer than {MAX_ELEMENT_CHARS} characters")
            continue
        if not line.strip():
            continue
        try:
            element = json.loads(line)
        except json.JSONDecodeError as exc:
            yield Row(where, malformed=f"not JSON ({exc.msg} at column {exc.colno})")
            continue
        yield _row(where, convert, element)


def _row(where: str, convert: Callable[[Any], dict[str, Any]], raw: Any) -> Row:
    try:
        return Row(where, event=convert(raw))
    except Ignored as exc:
        return Row(where, ignored=str(exc))
    except Malformed as exc:
        return Row(where, malformed=str(exc))


def _delimited_rows(fh: IO[str], fmt: str) -> Iterator[Row]:
    counter = {"line": 0}
    lines = _bounded_lines(fh, counter)
    if fmt == "tsv":
        reader: Iterator[list[str]] = (line.rstrip("\r\n").split("\t") for line in lines)
        convert, is_header = tsv_event, _tsv_header
    else:
        reader = csv.reader(lines, strict=True)
        convert, is_header = lastfm_event, _lastfm_header
    first = True
    while True:
        start = counter["line"] + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield Row(f"line {start}", malformed=f"not CSV ({exc})")
            continue
        where = f"line {start}" if counter["line"] == start else f"lines {start}-{counter['line']}"
        if any("\0TOO_LONG" in f for f in fields):
            yield Row(where, malformed=f"longer than {MAX_ELEMENT_CHARS} characters")
            continue
        if not fields or all(not f.strip() for f in fields):
            continue
        if first:
            first = False
            if is_header(fields):
                continue
        yield _row(where, convert, fields)


def _lastfm_header(fields: list[str]) -> bool:
    return [f.strip().lower() for f in fields] == LASTFM_HEADER


def _tsv_header(fields: list[str]) -> bool:
    if len(fields) < 3:
        return False
    try:
        float(fields[2])
        return False
    except ValueError:
        return fields[2].strip().lower() in TSV_HEADER_WORDS


def iter_rows(fh: IO[bytes], fmt: str) -> Iterator[Row]:
    """Every row of a history file of format ``fmt`` (already detected or checked), in file order."""
    start = fh.tell()
    array = fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"["  # a ListenBrainz export may be an array
    fh.seek(start)
    text = io.TextIOWrapper(fh, encoding="utf-8-sig", errors="strict", newline="")
    try:
        if fmt == "spotify_account":
            yield from _json_rows(text, spotify_account_event)
        elif fmt == "spotify_extended":
            yield from _json_rows(text, spotify_extended_event)
        elif fmt == "listenbrainz":
            if array:
                yield from _json_rows(text, listenbrainz_event)
            else:
                yield from _jsonl_rows(text, listenbrainz_event)
        elif fmt in ("lastfm_csv", "tsv"):
            yield from _delimited_rows(text, fmt)
        else:
            raise HistoryFileError(f"unknown format {fmt!r}; use one of {', '.join(FORMAT_NAMES)}")
    except UnicodeDecodeError as exc:
        raise HistoryFileError(f"is not UTF-8 text ({exc.reason} near byte {fh.tell()})") from None
    finally:
        text.detach()


# -- detection ---------------------------------------------------------------------------------------------
def candidates(head: bytes) -> tuple[set[str], str]:
    """The formats the start of a file fits, and what it looks like in words (for the error message)."""
    if b"\x00" in head[:4096]:
        return set(), "a binary file"
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not just a character cut in two by the end of the head
            return set(), f"text that is not UTF-8 (byte {exc.start}); save it as UTF-8"
        text = head[:exc.start].decode("utf-8-sig")
    text = text.lstrip()
    if not text:
        return set(), "an empty file"
    if text[0] == "[":
        try:
            first = next(iter(JsonArrayReader(_string_reader(text))), None)
        except HistoryFileError:
            first = "partial"
        except StopIteration:
            first = None
        if first is None and text[1:].lstrip().startswith("]"):
            return {"spotify_account", "spotify_extended", "listenbrainz"}, "an empty JSON array"
        if isinstance(first, dict):
            fits = _json_object_formats(first)
            if not fits and {"podcastName", "episodeName"} <= set(first):
                return fits, "Spotify's podcast history (StreamingHistory_podcast_*.json), which is not music"
            return fits, _looks(fits, f"a JSON array of objects with keys {sorted(first)[:8]}")
        return set(), "a JSON array whose first element could not be read as an object"
    if text[0] == "{":
        line = text.split("\n", 1)[0]
        try:
            first = json.loads(line)
        except json.JSONDecodeError:
            return set(), "JSON that is not one object per line"
        fits = _json_object_formats(first) & {"listenbrainz"} if isinstance(first, dict) else set()
        keys = sorted(first)[:8] if isinstance(first, dict) else "?"
        return fits, _looks(fits, f"JSON lines of objects with keys {keys}")
    line = text.split("\n", 1)[0].rstrip("\r")
    if "\t" in line:
        fields = line.split("\t")
        return ({"tsv"}, "tab-separated rows") if len(fields) in (3, 4) else (
            set(), f"tab-separated rows of {len(fields)} fields")
    try:
        fields = next(csv.reader(io.StringIO(text)))  # the first record, which may span lines
    except (csv.Error, StopIteration):
        fields = []
    if len(fields) == 4:
        return {"lastfm_csv"}, "comma-separated rows of 4 fields"
    return set(), f"text whose first line has {len(fields)} comma-separated field(s)"


def _looks(fits: set[str], fallback: str) -> str:
    return FORMATS[next(iter(fits))].title if len(fits) == 1 else fallback


def _json_object_formats(obj: dict[str, Any]) -> set[str]:
    keys = set(obj)
    fits = set()
    if {"endTime", "msPlayed"} <= keys and ({"trackName", "artistName"} & keys):
        fits.add("spotify_account")
    if {"ts", "ms_played"} <= keys:
        fits.add("spotify_extended")
    if {"listened_at", "track_metadata"} <= keys:
        fits.add("listenbrainz")
    return fits


def _string_reader(text: str) -> Callable[[int], str]:
    state = {"pos": 0}

    def read(n: int) -> str:
        out = text[state["pos"]:state["pos"] + n]
        state["pos"] += len(out)
        return out

    return read


_NAME_HINTS = (("StreamingHistory_music", "spotify_account"), ("StreamingHistory", "spotify_account"),
               ("Streaming_History_Audio", "spotify_extended"), ("endsong", "spotify_extended"))


def resolve_format(head: bytes, filename: str, wanted: str | None) -> str:
    """The file's format: ``wanted`` if the file fits it, else the one it fits; the error names the format
    expected (and what the file looks like instead)."""
    fits, looks = candidates(head)
    if wanted and wanted != "auto":
        if wanted not in FORMATS:
            raise HistoryFileError(f"unknown format {wanted!r}; use one of {', '.join(FORMAT_NAMES)}")
        if wanted in fits:
            return wanted
        if fits:
            looks = " or ".join(f"{f} ({FORMATS[f].title})" for f in sorted(fits))
        raise HistoryFileError(f"is not {describe(wanted)}; it looks like {looks}")
    if len(fits) == 1:
        return next(iter(fits))
    if len(fits) > 1:
        for hint, fmt in _NAME_HINTS:
            if hint.lower() in filename.lower() and fmt in fits:
                return fmt
        raise HistoryFileError(f"is {looks}, which fits {', '.join(sorted(fits))}; say which with format")
    raise HistoryFileError(f"is not a listening history this server reads; it looks like {looks}. Expected one of: "
                           + "; ".join(describe(f) for f in FORMAT_NAMES))
