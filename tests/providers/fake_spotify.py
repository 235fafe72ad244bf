"""A scripted, stateful stand-in for the few Spotify endpoints curation uses, where assertions need
known data and state (Prism answers with spec examples). It speaks the Feb-2026 shapes (``/items``,
``item``), keeps a snapshot_id per playlist that every write advances, and is strict where Spotify
is: 22-character ids, limit <= 50, at most 100 items per write, positions that must hold the URI.

Playlist entries are strings: a 22-character track id, ``local:<name>`` (a local file),
``episode:<id>`` or ``gone`` (an item whose track no longer exists: ``item`` is null).
"""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlsplit


def sid(name: str) -> str:
    """A valid 22-character Spotify id for a short test name ('a1' -> 'a1ZZZZ...'); names never contain Z."""
    return name + "Z" * (22 - len(name))


def short(id_: str) -> str:
    return id_.rstrip("Z")


def track(name: str, title: str, artist: str, isrc: str | None = None, duration_ms: int = 200_000,
          release: str = "2001-01-01") -> dict:
    id_ = sid(name)
    return {"id": id_, "uri": f"spotify:track:{id_}", "type": "track", "name": title,
            "artists": [{"name": artist}], "duration_ms": duration_ms, "explicit": False,
            "external_ids": {"isrc": isrc} if isrc else {}, "album": {"name": "LP", "release_date": release},
            "external_urls": {"spotify": f"https://open.spotify.com/track/{id_}"}}


class FakeSpotify:
    def __init__(self, catalogue: list[dict]):
        self.catalogue = {t["id"]: t for t in catalogue}
        self.playlists: dict[str, list[str]] = {}
        self.versions: dict[str, int] = {}
        self.writes: list[tuple[str, str, int]] = []  # (method, playlist id, number of items)
        self.bodies: list[tuple[str, dict]] = []  # (method, body) of each write
        self.created = 0
        self.fail_writes_after: int | None = None  # write requests answered before the server starts failing

    # -- test helpers -----------------------------------------------------------------------
    def make(self, name: str, entries: list[str]) -> str:
        """A playlist named ``name`` holding short track names (or local:/episode:/gone entries)."""
        pid = sid(name)
        self.playlists[pid] = [e if e == "gone" or ":" in e else sid(e) for e in entries]
        self.versions[pid] = 1
        return pid

    def names(self, pid_or_name: str) -> list[str]:
        pid = pid_or_name if len(pid_or_name) == 22 else sid(pid_or_name)
        return [short(e) if len(e) == 22 else e for e in self.playlists[pid]]

    def snapshot(self, pid: str) -> str:
        return f"snap{self.versions.get(pid, 1)}"

    def _entry(self, e: str) -> dict:
        if e == "gone":
            return {"item": None, "is_local": False}
        if e.startswith("local:"):
            name = e[6:]
            return {"is_local": True, "item": {"id": None, "uri": f"spotify:local:Artist:Album:{name}:200",
                                                "type": "track", "name": name, "artists": [{"name": "Artist"}]}}
        if e.startswith("episode:"):
            eid = e[8:]
            return {"is_local": False, "item": {"id": eid, "uri": f"spotify:episode:{eid}", "type": "episode",
                                                "name": f"Episode {eid}", "duration_ms": 1_000_000}}
        return {"item": self.catalogue[e], "is_local": False}

    @staticmethod
    def _uri(e: str) -> str | None:
        if e == "gone":
            return None
        if e.startswith("local:"):
            return f"spotify:local:Artist:Album:{e[6:]}:200"
        if e.startswith("episode:"):
            return f"spotify:episode:{e[8:]}"
        return f"spotify:track:{e}"

    # -- the API ------------------------------------------------------------------------------
    def __call__(self, method: str, path: str, headers: dict, raw: bytes):
        if headers.get("Authorization", "") == "Bearer expired":
            return 401, {}, {"error": {"status": 401, "message": "The access token expired"}}
        parts = urlsplit(path)
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        body = json.loads(raw) if raw else {}
        p = parts.path.rstrip("/")
        if p == "/search" and method == "GET":
            if int(q.get("limit", 5)) > 10:
                return 400, {}, {"error": {"status": 400, "message": "Invalid limit"}}
            return 200, {}, self._search(q)
        if p == "/me/playlists" and method == "POST":
            self.created += 1
            pid = sid(f"new{self.created}")
            self.playlists[pid] = []
            self.versions[pid] = 1
            return 201, {}, {"id": pid, "name": body["name"], "public": body.get("public"),
                             "collaborative": body.get("collaborative"), "items": {"total": 0},
                             "snapshot_id": self.snapshot(pid)}
        m = re.fullmatch(r"/playlists/([0-9A-Za-z]{22})(/items)?", p)
        if not m or m.group(1) not in self.playlists:
            return 404, {}, {"error": {"status": 404, "message": "Resource not found"}}
        pid, items = m.group(1), self.playlists[m.group(1)]
        if not m.group(2):
            return 200, {}, {"id": pid, "name": f"List {short(pid)}", "items": {"total": len(items)},
                             "snapshot_id": self.snapshot(pid)}
        if method == "GET":
            off, lim = int(q.get("offset", 0)), int(q.get("limit", 20))
            if not 1 <= lim <= 50:
                return 400, {}, {"error": {"status": 400, "message": "Invalid limit"}}
            page = items[off:off + lim]
            return 200, {}, {"items": [self._entry(e) for e in page], "total": len(items), "limit": lim, "offset": off,
                             "next": "more" if off + lim < len(items) else None}
        if self.fail_writes_after is not None and len(self.writes) >= self.fail_writes_after:
            return 500, {}, {"error": {"status": 500, "message": "Server error"}}
        if "snapshot_id" in body and body["snapshot_id"] != self.snapshot(pid):
            return 400, {}, {"error": {"status": 400, "message": "Invalid snapshot_id"}}
        error = self._write(method, pid, items, body)
        if error:
            return 400, {}, {"error": {"status": 400, "message": error}}
        self.versions[pid] += 1
        return (201 if method == "POST" else 200), {}, {"snapshot_id": self.snapshot(pid)}

    def _write(self, method: str, pid: str, items: list[str], body: dict) -> str | None:
        self.bodies.append((method, body))
        if method == "PUT" and "range_start" in body:
            start, before, length = body["range_start"], body["insert_before"], body.get("range_length", 1)
            if not (0 <= start and start + length <= len(items) and 0 <= before <= len(items)):
                return "Index out of bounds"
            self.writes.append(("MOVE", pid, length))
            block = items[start:start + length]
            rest = items[:start] + items[start + length:]
            at = before if before <= start else before - length
            items[:] = rest[:at] + block + rest[at:]
            return None
        objs = body.get("uris") or body.get("items") or []
        if len(objs) > 100:
            return "Too many ids requested"
        uris = [o["uri"] if isinstance(o, dict) else o for o in objs]
        ids = [u.rsplit(":", 1)[-1] for u in uris]
        self.writes.append((method, pid, len(ids)))
        if method == "POST":
            items.extend(ids)
        elif method == "PUT":
            items[:] = ids
        elif method == "DELETE":
            positions: set[int] = set()
            for o in objs:
                for pos in o.get("positions") or []:
                    if not 0 <= pos < len(items) or self._uri(items[pos]) != o["uri"]:
                        return f"Could not remove item at position {pos}"
                    positions.add(pos)
            if positions:
                items[:] = [e for i, e in enumerate(items) if i not in positions]
            else:
                items[:] = [e for e in items if self._uri(e) not in set(uris)]
        return None

    def _search(self, q: dict) -> dict:
        text = q["q"].lower()
        if text.startswith("isrc:"):
            hits = [t for t in self.catalogue.values() if (t["external_ids"].get("isrc") or "").lower() == text[5:]]
        else:
            words = text.split()
            hits = [t for t in self.catalogue.values()
                    if any(w in f"{t['name']} {t['artists'][0]['name']}".lower() for w in words)]
        off, lim = int(q.get("offset", 0)), int(q.get("limit", 5))
        return {"tracks": {"items": hits[off:off + lim], "total": len(hits), "offset": off, "limit": lim,
                           "next": "more" if off + lim < len(hits) else None}}
