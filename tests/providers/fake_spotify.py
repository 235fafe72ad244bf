"""A scripted, stateful stand-in for the few Spotify endpoints curation uses, where assertions need
known data (Prism answers with spec examples). It speaks the Feb-2026 shapes: ``/items``, ``item``."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit


def track(id_: str, title: str, artist: str, isrc: str | None = None, duration_ms: int = 200_000,
          release: str = "2001-01-01") -> dict:
    return {"id": id_, "uri": f"spotify:track:{id_}", "type": "track", "name": title,
            "artists": [{"name": artist}], "duration_ms": duration_ms, "explicit": False,
            "external_ids": {"isrc": isrc} if isrc else {}, "album": {"name": "LP", "release_date": release},
            "external_urls": {"spotify": f"https://open.spotify.com/track/{id_}"}}


class FakeSpotify:
    def __init__(self, catalogue: list[dict]):
        self.catalogue = {t["id"]: t for t in catalogue}
        self.playlists: dict[str, list[str]] = {}
        self.writes: list[tuple[str, str, int]] = []  # (method, playlist id, number of uris)
        self.created = 0

    def __call__(self, method: str, path: str, headers: dict, raw: bytes):
        import json

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
            pid = f"new{self.created}"
            self.playlists[pid] = []
            return 201, {}, {"id": pid, "name": body["name"], "public": body.get("public"),
                             "collaborative": body.get("collaborative"), "items": {"total": 0}}
        m = re.fullmatch(r"/playlists/(\w+)(/items)?", p)
        if not m or m.group(1) not in self.playlists:
            return 404, {}, {"error": {"status": 404, "message": "Resource not found"}}
        pid, items = m.group(1), self.playlists[m.group(1)]
        if not m.group(2):
            return 200, {}, {"id": pid, "name": f"List {pid}", "items": {"total": len(items)}, "snapshot_id": "s"}
        if method == "GET":
            off, lim = int(q.get("offset", 0)), int(q.get("limit", 20))
            if lim > 50:
                return 400, {}, {"error": {"status": 400, "message": "Invalid limit"}}
            page = items[off:off + lim]
            return 200, {}, {"items": [{"item": self.catalogue[i], "is_local": False} for i in page],
                             "total": len(items), "limit": lim, "offset": off,
                             "next": "more" if off + lim < len(items) else None}
        uris = [u["uri"] if isinstance(u, dict) else u for u in (body.get("uris") or body.get("items") or [])]
        if len(uris) > 100:
            return 400, {}, {"error": {"status": 400, "message": "Too many ids requested"}}
        ids = [u.rsplit(":", 1)[-1] for u in uris]
        self.writes.append((method, pid, len(ids)))
        if method == "POST":
            items.extend(ids)
        elif method == "PUT":
            items[:] = ids
        elif method == "DELETE":
            items[:] = [i for i in items if i not in set(ids)]
        return 200, {}, {"snapshot_id": "s2"}

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
