"""``echotune-mcp demo``: what an MCP client sees, end to end, in one command.

Starts the server as a child process over stdio, connects with the SDK client, asks for a
track with a progress bar, long-polls the job, saves every artifact to ``./out`` and prints
where they are plus the licence/provenance summary.
"""

from __future__ import annotations

import base64
import os
import sys
import time
from pathlib import Path
from typing import Any

from .clientutil import progress_bar


async def run_demo(*, out_dir: Path, prompt: str, duration_s: float, data_dir: str | None) -> int:
    from mcp import Client, StdioServerParameters

    out_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ}
    if data_dir:
        env["ECHOTUNE_DATA_DIR"] = str(Path(data_dir).expanduser())
    params = StdioServerParameters(command=sys.executable, args=["-m", "echotune_mcp", "serve"], env=env)
    started = time.monotonic()
    print(f"starting echotune-mcp over stdio; prompt: {prompt!r} ({duration_s:.0f} s)")

    last = {"line": ""}

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        line = progress_bar(progress / (total or 1.0), message or "")
        if sys.stdout.isatty():
            if line != last["line"]:
                last["line"] = line
                print("\r" + line.ljust(100), end="", flush=True)
        elif message and message != last["line"]:  # a log, not a terminal: one line per step
            last["line"] = message
            print(line, flush=True)

    async with Client(params, read_timeout_seconds=60) as client:
        result = await client.call_tool("generate_music", {"prompt": prompt, "duration_s": duration_s,
                                                           "wait_seconds": 25}, progress_callback=on_progress)
        data = _structured(result)
        while data["status"] in ("queued", "running"):
            result = await client.call_tool("get_job", {"job_id": data["job_id"], "wait_seconds": 25},
                                            progress_callback=on_progress)
            data = _structured(result)
        print()
        if data["status"] != "succeeded":
            print(f"job {data['job_id']} {data['status']}: {data.get('error')}", file=sys.stderr)
            return 1
        saved = []
        for art in data["artifacts"]:
            blob = await _read_bytes(client, art["content_uri"])
            path = out_dir / _filename(art)
            path.write_bytes(blob)
            saved.append((art, path))
        mix = next(a for a, _ in saved if a["kind"] == "audio")
        if not any(a["kind"] == "image" for a, _ in saved):
            picture = await _read_bytes(client, mix["waveform_uri"])
            (out_dir / "waveform.png").write_bytes(picture)
            saved.append(({"kind": "image", "size": len(picture)}, out_dir / "waveform.png"))
        summary = await _licence_summary(client, mix["artifact_id"])

    res = data["result"]
    print(f"done in {time.monotonic() - started:.1f} s: {res.get('bpm')} bpm, {res.get('key')}, "
          f"{res.get('duration_s')} s, loudness {res.get('loudness', {}).get('lufs', '?')} LUFS")
    print(f"saved to {out_dir.resolve()}:")
    for art, path in saved:
        print(f"  {path.name:<28} {art['kind']:<12} {art['size']:>10,} bytes")
    print("licence / provenance:")
    for line in summary:
        print(f"  {line}")
    return 0


def _structured(result: Any) -> dict[str, Any]:
    if result.is_error:
        texts = " ".join(b.text for b in result.content if getattr(b, "type", "") == "text")
        raise SystemExit(f"the server refused: {texts}")
    return result.structured_content


async def _read_bytes(client: Any, uri: str) -> bytes:
    res = await client.read_resource(uri)
    item = res.contents[0]
    return base64.b64decode(item.blob) if getattr(item, "blob", None) is not None else item.text.encode()


def _filename(art: dict[str, Any]) -> str:
    return art["name"]


async def _licence_summary(client: Any, artifact_id: str) -> list[str]:
    """Prefer the licensing tool (check_usage) when the server has it; else the stored provenance."""
    tools = {t.name for t in (await client.list_tools()).tools}
    lines: list[str] = []
    if "check_usage" in tools:
        for use in ("personal", "commercial_release"):
            r = await client.call_tool("check_usage", {"artifact": artifact_id, "use": use})
            if not r.is_error and r.structured_content:
                sc = r.structured_content
                why = "; ".join(r["explanation"] for r in sc.get("reasons", [])[:2]) or "no restrictions found"
                lines.append(f"{use}: {sc['decision']} - {why}")
                lines.extend(f"    -> {g}" for g in sc.get("guidance", [])[:2])
    r = await client.call_tool("get_artifact", {"artifact": artifact_id})
    meta = r.structured_content or {}
    res = await client.read_resource(f"echotune://artifacts/{artifact_id}")
    import json

    record = json.loads(res.contents[0].text)
    lines.append(f"artifact {artifact_id} sha256 {meta.get('sha256', '')[:16]}... licence: "
                 f"{record.get('license') or 'not set (see check_usage)'}")
    try:
        prov_res = await client.read_resource(f"echotune://artifacts/{artifact_id}/provenance")
        prov = json.loads(prov_res.contents[0].text)
        prov = prov.get("provenance", prov)
        model = prov.get("model") or {}
        sf = prov.get("soundfont") or {}
        sf_lic = sf.get("license") or {}
        lines.append(f"generator: {prov.get('backend')} ({model.get('model_id')}), seed {prov.get('seed')}, "
                     f"soundfont {sf.get('name')} ({sf_lic.get('id') if isinstance(sf_lic, dict) else sf_lic})")
    except Exception:  # older servers without the provenance resource: the lines above suffice
        pass
    return lines
