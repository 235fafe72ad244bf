"""Human-friendly rendering of MCP results for the CLI (``call``, ``jobs``, ``demo``)."""

from __future__ import annotations

import json
from typing import Any


def render_result(result: Any) -> str:
    """Pretty structured content when there is some, else the text blocks; resource links listed."""
    lines: list[str] = []
    if getattr(result, "is_error", False):
        texts = [b.text for b in result.content if getattr(b, "type", "") == "text"]
        return "error: " + "\n".join(texts)
    if getattr(result, "structured_content", None) is not None:
        lines.append(json.dumps(result.structured_content, indent=2, sort_keys=False))
    else:
        lines.extend(b.text for b in result.content if getattr(b, "type", "") == "text")
    for block in result.content:
        if getattr(block, "type", "") == "resource_link":
            lines.append(f"-> {block.uri}  ({block.mime_type}, {block.size} bytes)")
    return "\n".join(lines)


def progress_bar(fraction: float, message: str, width: int = 30) -> str:
    fraction = max(0.0, min(1.0, fraction))
    filled = int(round(fraction * width))
    return f"[{'#' * filled}{'.' * (width - filled)}] {fraction * 100:5.1f}%  {message[:60]}"


def jobs_table(jobs: list[dict[str, Any]]) -> str:
    """One line per job: id, tool, status, progress, age, message (or error)."""
    import time

    if not jobs:
        return "no jobs"
    rows = [("JOB", "TOOL", "STATUS", "PROGRESS", "AGE", "MESSAGE")]
    for j in jobs:
        age = time.time() - j["created_at"]
        age_s = f"{age:.0f}s" if age < 120 else f"{age / 60:.0f}m" if age < 7200 else f"{age / 3600:.0f}h"
        rows.append((j["job_id"], j["tool"], j["status"], f"{j['progress'] * 100:.0f}%", age_s,
                     (j.get("error") or j.get("message") or "")[:50]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)
