"""What sealing listening events with per-principal keys costs: import and read-back of 100k events, sealed vs not.

Writes a 100k-play Spotify extended-history file, imports it for four principals into one SQLite store (plain,
sealed, plain, sealed: the alternation evens out the store growing), then reads two of them back whole.
Prints one JSON line. Usage: .venv/bin/python tools/bench_sealing.py [N]
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from echotune_mcp.config import Settings
from echotune_mcp.recommend.importer import import_history, path_source
from echotune_mcp.storage import open_storage


def write_extended(path: Path, n: int) -> None:
    with open(path, "w") as fh:
        fh.write("[\n")
        for i in range(n):
            ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1_600_000_000 + 37 * i))
            row = {"ts": ts, "ms_played": 1000 + i % 300_000, "master_metadata_track_name": f"Track {i % 5000}",
                   "master_metadata_album_artist_name": f"Artist {i % 700}",
                   "master_metadata_album_album_name": f"Album {i % 1200}",
                   "spotify_track_uri": "spotify:track:" + f"{i % 5000:022d}", "episode_name": None,
                   "spotify_episode_uri": None, "reason_start": "trackdone", "reason_end": "trackdone",
                   "skipped": i % 7 == 0, "incognito_mode": False}
            fh.write(("," if i else "") + json.dumps(row) + "\n")
        fh.write("]\n")


async def read_all(storage, owner: str) -> tuple[int, float]:
    t0, n, cursor = time.monotonic(), 0, None
    while True:
        page, cursor = await storage.listening.find(owner, limit=1000, cursor=cursor)
        n += len(page)
        if not cursor:
            return n, time.monotonic() - t0


async def main(n: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-sealing-"))
    path = tmp / "Streaming_History_Audio_2020-2023_0.json"
    write_extended(path, n)
    storage = await open_storage(Settings(data_dir=tmp / "data"))
    keys = storage.listening.keys
    times: dict[str, list[float]] = {"plain": [], "sealed": []}
    try:
        for owner, sealed in (("p1", False), ("s1", True), ("p2", False), ("s2", True)):
            storage.listening.keys = keys if sealed else None
            t0 = time.monotonic()
            report = await import_history(storage.listening, owner, [path_source(path, None)], f"imp_{owner}")
            times["sealed" if sealed else "plain"].append(time.monotonic() - t0)
            assert report.imported == n, report
        storage.listening.keys = keys
        n_sealed, read_sealed = await read_all(storage, "s1")
        storage.listening.keys = None
        n_plain, read_plain = await read_all(storage, "p1")
        assert n_sealed == n_plain == n
    finally:
        storage.listening.keys = keys
        await storage.close()
    plain, sealed = sum(times["plain"]) / 2, sum(times["sealed"]) / 2
    print(json.dumps({"bench": "sealing", "events": n, "import_plain_s": round(plain, 1),
                      "import_sealed_s": round(sealed, 1), "import_slowdown": round(sealed / plain, 2),
                      "read_plain_s": round(read_plain, 1), "read_sealed_s": round(read_sealed, 1),
                      "read_slowdown": round(read_sealed / read_plain, 2)}))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000))
