"""Property-based fuzzing of every tool's input schema (issue #13, "How it is checked").

For each tool the server lists, hypothesis draws arguments from the tool's own JSON schema: values that fit
("valid-ish", pointing at real artifacts and jobs where the schema asks for one), values that do not (wrong
types, numbers past the bounds, strings past ``maxLength``), hostile strings (path traversal, NUL bytes,
right-to-left overrides, 100 kB strings, injection text), unknown fields and missing required fields. Every
call goes through the in-memory MCP client, exactly as an agent's would.

Each call must be answered, within a bounded time, by a result or by an ``isError`` result that says what was
wrong: an argument-validation error names the field, and no call may end in the SDK's bare "Error executing
tool X" (an unexpected exception inside the tool). Afterwards the server still answers cheap calls.

Runs are reproducible (``derandomize``); job-starting tools get small ``wait_seconds`` and their jobs are
cancelled at once, so no real long work piles up.
"""

from __future__ import annotations

import base64
import io
import logging
import math
import re
import time
from pathlib import Path
from typing import Any

import anyio
import jsonschema
import numpy as np
import pytest
import soundfile as sf
from anyio.from_thread import start_blocking_portal
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

EXAMPLES_PER_TOOL = 18  # x 30-odd tools: well over the 500 calls the issue asks for
CALL_TIMEOUT_S = 60.0  # no single call may take longer, whatever it is given

HOSTILE_STRINGS = [
    "", " ", "\t\n", "../../../../etc/passwd", "/etc/passwd", "..\\..\\..\\windows\\win.ini", "~/.ssh/id_rsa",
    "echotune://artifacts/../../etc/passwd", "echotune://artifacts/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "echotune://artifacts/", "echotune://jobs/x", "file:///etc/passwd", "http://169.254.169.254/latest/meta-data",
    "\x00", "art_\x00../../x", "\u202egnp.exe", "\ufeff\u200b\u200d", "🎵" * 64, "Ω≈ç√∫˜µ≤≥÷", "ﷺ" * 20,
    "' OR 1=1 --", "$where", '{"$gt": ""}', "%s%s%s%n", "${jndi:ldap://127.0.0.1/x}", "<script>alert(1)</script>",
    "spotify:track:../../me", "spotify:playlist:37i9dQZF1DXcBWIGoYBM5M/../../me", "https://open.spotify.com/../../v1/me",
    "CON", "NUL", "-1", "1e309", "NaN", "x" * 100_000, "\n" * 5_000, "a" * 2049,
]
WRONG_TYPES: list[Any] = [
    None, True, False, 0, -1, 2**63, 10**30, -(10**30), 1e308, -1e308, 0.5, [], [1, "a", None], {}, {"a": {"b": []}},
    [[[[[]]]]], {"$gt": ""},
]


# -- strategies from JSON schema -------------------------------------------------------------------------------
class SchemaStrategies:
    """Hypothesis strategies for one tool's input schema, with pools of real ids for id-like fields."""

    def __init__(self, schema: dict[str, Any], pools: dict[str, list[str]]):
        self.schema = schema
        self.defs = schema.get("$defs", {})
        self.pools = pools

    def resolve(self, s: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in s:
            s = self.defs[s["$ref"].rsplit("/", 1)[-1]]
        return s

    def _pool_for(self, field: str) -> list[str]:
        f = field.lower()
        if "job" in f:
            return self.pools["jobs"]
        if f in {"artifact", "audio", "continue_from", "melody", "stems", "path", "manifest"} or "artifact" in f:
            return self.pools["audio"]
        return []

    def valid(self, s: dict[str, Any], field: str = "") -> st.SearchStrategy[Any]:
        s = self.resolve(s)
        if "anyOf" in s:
            return st.one_of([self.valid(sub, field) for sub in s["anyOf"]])
        if "enum" in s:
            return st.sampled_from(s["enum"])
        if "const" in s:
            return st.just(s["const"])
        kind = s.get("type")
        if kind == "null":
            return st.none()
        if kind == "boolean":
            return st.booleans()
        if kind in ("number", "integer"):
            lo, hi = s.get("minimum", s.get("exclusiveMinimum")), s.get("maximum", s.get("exclusiveMaximum"))
            if field in {"wait_seconds"}:  # keep calls short: jobs are cancelled, not waited for
                hi = min(hi if hi is not None else 0.2, 0.2)
            if field in {"duration_s", "length", "limit", "max_tracks", "depth"} and hi is not None:
                hi = min(hi, max(lo or 0, 0) + 4)
            if kind == "integer":
                return st.integers(min_value=None if lo is None else math.ceil(lo) + ("exclusiveMinimum" in s),
                                   max_value=None if hi is None else math.floor(hi) - ("exclusiveMaximum" in s))
            return st.floats(min_value=lo, max_value=hi, allow_nan=False, allow_infinity=False,
                             exclude_min="exclusiveMinimum" in s, exclude_max="exclusiveMaximum" in s)
        if kind == "string":
            lo, hi = s.get("minLength", 0), s.get("maxLength", 64)
            if "pattern" in s:
                text = st.from_regex(s["pattern"], fullmatch=True).filter(lambda v: lo <= len(v) <= hi)
            else:
                text = st.text(min_size=lo, max_size=min(hi, 48))
            pool = [p for p in self._pool_for(field) if lo <= len(p) <= hi]
            return st.one_of(st.sampled_from(pool), text) if pool else text
        if kind == "array":
            items = self.valid(s.get("items", {}), field)
            return st.lists(items, min_size=s.get("minItems", 0), max_size=min(s.get("maxItems", 4), 4))
        if kind == "object":
            return self.valid_object(s, field)
        return st.sampled_from(["x", 1, None])

    def valid_object(self, s: dict[str, Any], field: str = "") -> st.SearchStrategy[dict[str, Any]]:
        props: dict[str, Any] = s.get("properties", {})
        if not props:
            extra = s.get("additionalProperties")
            if isinstance(extra, dict):
                return st.dictionaries(st.text(min_size=1, max_size=12), self.valid(extra, field),
                                       max_size=min(s.get("maxProperties", 3), 3))
            return st.just({})
        required = set(s.get("required", []))
        return st.fixed_dictionaries(
            {k: self.valid(v, k) for k, v in props.items() if k in required},
            optional={k: self.valid(v, k) for k, v in props.items() if k not in required},
        )

    def invalid(self, s: dict[str, Any]) -> st.SearchStrategy[Any]:
        """A value of the wrong type or past the field's bounds (or just hostile text)."""
        s = self.resolve(s)
        options: list[Any] = []
        for sub in [s, *(self.resolve(x) for x in s.get("anyOf", []))]:
            if "maximum" in sub or "exclusiveMaximum" in sub:
                top = sub.get("maximum", sub.get("exclusiveMaximum"))
                options += [top + 1, top * 10 + 1, 10**18]
            if "minimum" in sub or "exclusiveMinimum" in sub:
                bottom = sub.get("minimum", sub.get("exclusiveMinimum"))
                options += [bottom - 1, -(10**18), bottom - 0.001]
            if "maxLength" in sub:
                options.append("y" * (sub["maxLength"] + 1))
            if sub.get("minLength", 0) > 0:
                options.append("")
            if "maxItems" in sub:
                options.append(["x"] * (sub["maxItems"] + 1))
            if "enum" in sub:
                options += ["not-a-choice", str(sub["enum"][0]).upper() + "\x00"]
        return st.sampled_from(options + WRONG_TYPES + HOSTILE_STRINGS)

    def call(self) -> st.SearchStrategy[tuple[str, dict[str, Any], str | None]]:
        """(mode, arguments, field the mode touched)."""
        props: dict[str, Any] = self.schema.get("properties", {})
        base = self.valid_object(self.schema)

        @st.composite
        def draw(data: st.DrawFn) -> tuple[str, dict[str, Any], str | None]:
            args = data(base)
            if "wait_seconds" in props:  # never the default (up to 20 s): the suite must not wait for real work
                args["wait_seconds"] = data(st.sampled_from([0, 0.05, 0.2]))
            modes = ["valid", "mutate", "mutate", "unknown_field"] + (["drop_required"] if self.schema.get("required")
                                                                      else [])
            mode = data(st.sampled_from(modes if props else ["valid", "unknown_field"]))
            if mode == "mutate":
                field = data(st.sampled_from(sorted(props)))
                args[field] = data(self.invalid(props[field]))
                return mode, args, field
            if mode == "unknown_field":
                field = data(st.sampled_from(["__proto__", "constructor", "owner", "principal", "x" * 300, "ünï",
                                              "wait_seconds_", "$where", ""]))
                args[field] = data(st.sampled_from(WRONG_TYPES + HOSTILE_STRINGS[:8]))
                return mode, args, field
            if mode == "drop_required":
                field = data(st.sampled_from(sorted(self.schema["required"])))
                args.pop(field, None)
                return mode, args, field
            return mode, args, None

        return draw()


# -- the run ---------------------------------------------------------------------------------------------------
def _tone_wav(seconds: float = 1.0, sr: int = 22050) -> bytes:
    t = np.arange(int(seconds * sr)) / sr
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _text(result: Any) -> str:
    return "\n".join(getattr(c, "text", "") for c in result.content)


class _CrashLog(logging.Handler):
    """The server logs a tool's unexpected exception with its traceback; keep them for the failure message."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(self.format(record))


def test_fuzz_every_tool_schema(make_client, settings, capsys):
    crash_log = _CrashLog()
    crash_log.setFormatter(logging.Formatter("%(message)s"))
    logging.getLogger().addHandler(crash_log)
    stats = {"calls": 0, "results": 0, "errors": 0, "validation_errors": 0, "jobs_cancelled": 0}
    problems: list[str] = []
    accepted_outside_schema: list[str] = []
    slowest: list[tuple[float, str, str]] = []
    started = time.monotonic()
    try:
        with start_blocking_portal() as portal, portal.wrap_async_context_manager(make_client()) as (client, _app):
            tone = _tone_wav()
            local = settings.allowed_roots[0] / "tone.wav"
            local.write_bytes(tone)
            seeded = portal.call(client.call_tool, "import_audio",
                                 {"data_base64": base64.b64encode(tone).decode(), "filename": "tone.wav"})
            assert not seeded.is_error, _text(seeded)
            art = seeded.structured_content["artifact_id"]
            pools = {"audio": [art, f"echotune://artifacts/{art}", str(local), "art_missing0000000000000"],
                     "jobs": ["job_missing000000000000000"]}
            tools = portal.call(client.list_tools).tools
            assert len(tools) >= 25, [t.name for t in tools]

            def call(name: str, args: dict[str, Any]) -> Any:
                async def bounded() -> Any:
                    with anyio.fail_after(CALL_TIMEOUT_S):
                        return await client.call_tool(name, args)

                return portal.call(bounded)

            def fuzzer(tool: Any) -> Any:
                strategies = SchemaStrategies(tool.input_schema, pools)
                validator = jsonschema.Draft202012Validator(tool.input_schema)

                @hsettings(max_examples=EXAMPLES_PER_TOOL, deadline=None, derandomize=True, database=None,
                           suppress_health_check=list(HealthCheck), print_blob=False)
                @given(strategies.call())
                def fuzz_one(case: tuple[str, dict[str, Any], str | None]) -> None:
                    mode, args, field = case
                    stats["calls"] += 1
                    shown = repr(args)[:300]
                    t0 = time.monotonic()
                    try:
                        result = call(tool.name, args)
                    except TimeoutError:
                        problems.append(f"{tool.name} {mode} {shown}: no answer within {CALL_TIMEOUT_S} s")
                        return
                    except Exception as exc:  # the protocol itself failed: the call was not answered
                        problems.append(f"{tool.name} {mode} {shown}: {type(exc).__name__}: {exc}"[:600])
                        return
                    text = _text(result)
                    slowest.append((time.monotonic() - t0, tool.name, shown[:160]))
                    if not result.is_error:
                        stats["results"] += 1
                        if mode == "unknown_field":
                            problems.append(f"{tool.name} {mode} {shown}: unknown argument {field!r} was accepted")
                        if not validator.is_valid(args) and mode == "mutate":
                            accepted_outside_schema.append(f"{tool.name}.{field}={args.get(field)!r:.60}")
                        job_id = (result.structured_content or {}).get("job_id")
                        if job_id and (result.structured_content or {}).get("status") in ("queued", "running"):
                            call("cancel_job", {"job_id": job_id})
                            stats["jobs_cancelled"] += 1
                        return
                    stats["errors"] += 1
                    if re.fullmatch(rf"Error executing tool {re.escape(tool.name)}(: Error executing tool .*)?",
                                    text.strip()):
                        problems.append(f"{tool.name} {mode} {shown}: crashed (unexpected exception inside the tool)")
                    elif "validation error" in text:
                        stats["validation_errors"] += 1
                        if field is not None and mode != "valid" and field not in text:
                            problems.append(f"{tool.name} {mode} {shown}: validation error does not name "
                                            f"{field!r}: {text[:300]}")
                    elif len(text.strip()) < 12:
                        problems.append(f"{tool.name} {mode} {shown}: unhelpful error {text!r}")

                return fuzz_one

            for tool in tools:
                fuzzer(tool)()

            # After everything: the server is alive and answers cheap calls.
            alive = call("list_jobs", {"limit": 5})
            assert not alive.is_error, _text(alive)
            status = call("providers_status", {})
            assert not status.is_error, _text(status)
    finally:
        logging.getLogger().removeHandler(crash_log)
    elapsed = time.monotonic() - started
    with capsys.disabled():
        print(f"\n[fuzz] {stats['calls']} generated tool calls across every tool's schema in {elapsed:.0f} s: "
              f"{stats['results']} results, {stats['errors']} isError ({stats['validation_errors']} argument "
              f"validation), {stats['jobs_cancelled']} jobs cancelled; {len(problems)} problems; "
              f"{len(accepted_outside_schema)} out-of-schema values accepted (coerced)")
        per_tool: dict[str, float] = {}
        for took, name, _ in slowest:
            per_tool[name] = per_tool.get(name, 0.0) + took
        print("[fuzz] per tool:", sorted(((round(v, 1), k) for k, v in per_tool.items()), reverse=True)[:8])
        for took, name, shown in sorted(slowest, reverse=True)[:3]:
            print(f"[fuzz] slowest: {took:.1f} s {name} {shown}")
    assert stats["calls"] >= 500
    tracebacks = "\n---\n".join(crash_log.records[:5])
    assert problems == [], "\n".join(problems[:40]) + ("\n\nserver tracebacks:\n" + tracebacks if tracebacks else "")
