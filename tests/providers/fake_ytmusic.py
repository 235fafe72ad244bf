"""A stateful stand-in for the youtubei endpoints the YouTube Music adapter writes through.

ytmusicapi runs unmodified against it: its requests session is pointed at this loopback server.
Playlist pages are built from a recorded owned-playlist response (../shared/fixtures/ytmusic), with
each item's videoId, setVideoId and title substituted, so the parser sees YouTube's real shapes;
long playlists are split into 100-item pages joined by 2025-style continuation tokens. Edits
(``ACTION_ADD_VIDEO``, ``ACTION_REMOVE_VIDEO``, ``ACTION_MOVE_VIDEO_BEFORE``) change the state the
way YouTube Music does, and ``fail_edits_after`` makes the n-th edit request onwards answer 500.
"""

from __future__ import annotations

import copy
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

HOME = b'<html><script>ytcfg.set({"VISITOR_DATA": "CgtWaXNpdG9yMTIz"});</script></html>'
PAGE = 100
# What the recorded response's first item carries; replaced per generated item.
_T_VIDEO, _T_SET, _T_TITLE = "3_R4ulvg8OY", "56B44F6D10557CC6", "I Hate Everything (feat. Action Bronson)"
_GREY = "MUSIC_ITEM_RENDERER_DISPLAY_POLICY_GREY_OUT"


def vid(n: int | str) -> str:
    """A valid 11-character videoId for a short test name."""
    return (str(n) + "_" * 11)[:11]


@dataclass
class Entry:
    video_id: str
    set_id: str
    title: str
    kind: str = "song"  # song, episode, unavailable


@dataclass
class FakeYTMusic:
    fixture: Path
    playlists: dict[str, list[Entry]] = field(default_factory=dict)
    edits: list[list[dict]] = field(default_factory=list)  # each edit request's actions, in order
    fail_edits_after: int | None = None  # edit requests answered before the server starts failing
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        data = json.loads(self.fixture.read_text())
        sections = data["contents"]["twoColumnBrowseResultsRenderer"]["secondaryContents"]["sectionListRenderer"]
        shelf = sections["contents"][0]["musicPlaylistShelfRenderer"]
        self._template_pid = shelf["playlistId"]
        self._item = json.dumps(shelf["contents"][0])
        shelf["contents"] = []
        sections.pop("continuations", None)  # no suggestions / related requests
        self._page = data

    # -- state helpers --------------------------------------------------------------------
    def new_set_id(self) -> str:
        return f"SET{next(self._ids):013d}"

    def make(self, pid: str, items: list[tuple[str, str] | tuple[str, str, str]]) -> list[Entry]:
        """items: (videoId, title[, kind]); returns the entries (with their setVideoIds)."""
        self.playlists[pid] = [Entry(i[0], self.new_set_id(), i[1], i[2] if len(i) > 2 else "song") for i in items]
        return self.playlists[pid]

    def video_ids(self, pid: str) -> list[str]:
        return [e.video_id for e in self.playlists[pid]]

    # -- rendering ------------------------------------------------------------------------
    def _render(self, pid: str, e: Entry) -> dict:
        text = (self._item.replace(_T_VIDEO, e.video_id).replace(_T_SET, e.set_id)
                .replace(json.dumps(_T_TITLE)[1:-1], e.title).replace(self._template_pid, pid))
        if e.kind == "episode":
            text = text.replace("MUSIC_VIDEO_TYPE_ATV", "MUSIC_VIDEO_TYPE_PODCAST_EPISODE")
        item = json.loads(text)
        if e.kind == "unavailable":
            item["musicResponsiveListItemRenderer"]["musicItemRendererDisplayPolicy"] = _GREY
        return item

    def _items(self, pid: str, start: int) -> list[dict]:
        entries = self.playlists[pid]
        out = [self._render(pid, e) for e in entries[start:start + PAGE]]
        if start + PAGE < len(entries):
            out.append({"continuationItemRenderer": {"continuationEndpoint": {"continuationCommand": {
                "token": f"{pid}:{start + PAGE}", "request": "CONTINUATION_REQUEST_TYPE_BROWSE"}}}})
        return out

    def _browse(self, body: dict) -> tuple[int, dict, object]:
        if "continuation" in body:
            pid, start = body["continuation"].rsplit(":", 1)
            return 200, {}, {"onResponseReceivedActions": [{"appendContinuationItemsAction": {
                "continuationItems": self._items(pid, int(start))}}]}
        pid = body.get("browseId", "")[2:]
        if pid not in self.playlists:
            return 404, {}, {"error": {"code": 404, "message": "Requested entity was not found."}}
        page = json.loads(json.dumps(self._page).replace(self._template_pid, pid))
        shelf = (page["contents"]["twoColumnBrowseResultsRenderer"]["secondaryContents"]["sectionListRenderer"]
                 ["contents"][0]["musicPlaylistShelfRenderer"])
        shelf["contents"] = self._items(pid, 0)
        return 200, {}, page

    # -- edits ----------------------------------------------------------------------------
    def _edit(self, body: dict) -> tuple[int, dict, object]:
        if self.fail_edits_after is not None and len(self.edits) >= self.fail_edits_after:
            return 500, {}, {"error": {"code": 500, "message": "Internal error encountered."}}
        pid = body["playlistId"]
        if pid not in self.playlists:
            return 404, {}, {"error": {"code": 404, "message": "Requested entity was not found."}}
        entries = self.playlists[pid]
        actions = copy.deepcopy(body["actions"])
        self.edits.append(actions)
        results = []
        for a in actions:
            if a["action"] == "ACTION_ADD_VIDEO":
                e = Entry(a["addedVideoId"], self.new_set_id(), f"Song {a['addedVideoId']}")
                entries.append(e)
                results.append({"playlistEditVideoAddedResultData": {"videoId": e.video_id, "setVideoId": e.set_id}})
            elif a["action"] == "ACTION_REMOVE_VIDEO":
                entries[:] = [e for e in entries if e.set_id != a["setVideoId"]]
            elif a["action"] == "ACTION_MOVE_VIDEO_BEFORE":
                moved = next(e for e in entries if e.set_id == a["setVideoId"])
                entries.remove(moved)
                succ = a.get("movedSetVideoIdSuccessor")
                at = next(i for i, e in enumerate(entries) if e.set_id == succ) if succ else len(entries)
                entries.insert(at, moved)
            else:
                return 400, {}, {"error": {"code": 400, "message": f"unexpected action {a['action']}"}}
        return 200, {}, {"status": "STATUS_SUCCEEDED", "playlistEditResults": results}

    def __call__(self, method: str, path: str, headers: dict, raw: bytes):
        if method == "GET" and path.split("?")[0] == "/":
            return 200, {"Content-Type": "text/html"}, HOME
        body = json.loads(raw or b"{}")
        route = path.split("?")[0]
        if route == "/youtubei/v1/browse":
            return self._browse(body)
        if route == "/youtubei/v1/browse/edit_playlist":
            return self._edit(body)
        if route == "/youtubei/v1/playlist/create":
            pid = "PL" + f"{next(self._ids):032d}"
            self.playlists[pid] = []
            for v in body.get("videoIds") or []:
                self.playlists[pid].append(Entry(v, self.new_set_id(), f"Song {v}"))
            return 200, {}, {"playlistId": pid}
        return 404, {}, {"error": {"code": 404, "message": "Requested entity was not found."}}


def auth_file(tmp_path: Path) -> Path:
    """A browser-headers auth file as `ytmusicapi browser` writes it (values are placeholders)."""
    path = tmp_path / "ytmusic-auth.json"
    path.write_text(json.dumps({"authorization": "SAPISIDHASH 0_placeholder", "cookie": "__Secure-3PAPISID=test; SAPISID=test",
                                "x-goog-authuser": "0", "origin": "https://music.youtube.com"}))
    return path
