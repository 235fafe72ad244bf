"""The client side of the engine daemon: the same ``generate``/``events``/``cancel`` surface as Engine.

Nothing here waits without a bound: connecting has ``ECHOTUNE_ENGINE_CONNECT_TIMEOUT_S`` and every
read ``ECHOTUNE_ENGINE_READ_TIMEOUT_S``. The daemon writes a heartbeat line every ``HEARTBEAT_S``
while a request loads, waits or decodes, so a live daemon is never silent that long; one that is
(wedged, or a port held by something that accepts and never answers) fails the request with an
error naming the setting. Cancelling a handle closes the stream, which the daemon takes as cancel.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import numpy as np

from .engine import EngineEvent
from .melody_chroma import MAX_SECONDS as MELODY_SECONDS
from .scheduler import EngineBusy

if TYPE_CHECKING:
    from ..config import Settings

log = logging.getLogger(__name__)
HEARTBEAT_S = 2.0  # the daemon writes {"kind": "heartbeat"} at least this often
FINAL = ("result", "error", "cancelled")


def audio_to_b64(audio: np.ndarray) -> str:
    """float32 samples as base64, the daemon protocol's audio encoding (shape travels beside it)."""
    return base64.b64encode(np.ascontiguousarray(audio, dtype=np.float32).tobytes()).decode()


def audio_from_b64(data: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(data), dtype=np.float32)


class RemoteHandle:
    def __init__(self, engine: RemoteEngine, client: Any, response: Any, lines: AsyncIterator[str],
                 info: dict[str, Any], request_id: str):
        self._engine, self._client, self._response, self._lines = engine, client, response, lines
        self.info, self.id = info, request_id
        self.final: EngineEvent | None = None

    async def events(self) -> AsyncIterator[EngineEvent]:
        """Progress and preview events, then the final one; a silent or broken daemon ends in an error event."""
        try:
            while self.final is None:
                try:
                    data = await self._engine._next_event(self._lines)
                except RuntimeError as exc:  # timed out, closed early or garbled: the request is lost
                    self.final = EngineEvent("error", message=str(exc))
                    yield self.final
                    return
                audio = audio_from_b64(data["audio_b64"]).reshape(int(data["channels"]), -1) \
                    if "audio_b64" in data else None
                event = EngineEvent(data["kind"], fraction=data.get("fraction", 0.0), message=data.get("message", ""),
                                    audio=audio, sample_rate=int(data.get("sample_rate", 0)))
                if event.kind in FINAL:
                    self.final = event
                yield event
        finally:
            await self.aclose()

    def cancel(self) -> None:
        """Close the stream (the daemon frees the request's slot when it sees it closed)."""
        asyncio.ensure_future(self.aclose())

    async def aclose(self) -> None:
        await self._response.aclose()
        await self._client.aclose()


class RemoteEngine:
    def __init__(self, url: str, *, token: str | None = None, connect_timeout_s: float = 5.0,
                 read_timeout_s: float = 30.0):
        self.url = url.rstrip("/")
        self.token = token
        self.connect_timeout_s, self.read_timeout_s = float(connect_timeout_s), float(read_timeout_s)

    @classmethod
    def from_settings(cls, settings: Settings) -> RemoteEngine:
        if not settings.engine_url:
            raise ValueError("ECHOTUNE_ENGINE_URL is not set")
        return cls(settings.engine_url, token=settings.engine_token,
                   connect_timeout_s=settings.engine_connect_timeout_s, read_timeout_s=settings.engine_read_timeout_s)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _timeout(self) -> Any:
        import httpx

        return httpx.Timeout(self.read_timeout_s, connect=self.connect_timeout_s)

    async def _next_event(self, lines: AsyncIterator[str]) -> dict[str, Any]:
        """The next non-heartbeat event of the stream; RuntimeError when the daemon is silent, gone or garbled."""
        import httpx

        try:
            async for line in lines:
                if not line.strip():
                    continue
                data = json.loads(line)
                if not isinstance(data, dict) or not isinstance(data.get("kind"), str):
                    raise ValueError(f"not an event: {line[:200]!r}")
                if data["kind"] != "heartbeat":
                    return data
        except httpx.TimeoutException as exc:
            raise RuntimeError(f"the engine daemon at {self.url} sent nothing for {self.read_timeout_s:g} s "
                               "(ECHOTUNE_ENGINE_READ_TIMEOUT_S); the request was abandoned") from exc
        except httpx.HTTPError as exc:
            raise RuntimeError(f"the connection to the engine daemon at {self.url} broke ({exc})") from exc
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            raise RuntimeError(f"the engine daemon at {self.url} sent a malformed event ({exc})") from exc
        raise RuntimeError(f"the engine daemon at {self.url} closed the stream before the result")

    async def generate(self, **request: Any) -> RemoteHandle:
        import httpx

        for key in ("continuation", "melody"):
            clip = request.pop(key, None)
            if clip is not None:
                audio, sr = clip
                if key == "melody":  # only its first 30 s condition MusicGen-Melody (1 s more: resampling edges)
                    audio = np.asarray(audio)[:int((MELODY_SECONDS + 1) * int(sr))]
                request[key] = {"audio_b64": audio_to_b64(audio), "sample_rate": sr}
        client = httpx.AsyncClient(timeout=self._timeout(), headers=self._headers())
        try:
            try:
                req = client.build_request("POST", f"{self.url}/v1/generate", json=request)
                response = await client.send(req, stream=True)
            except httpx.TimeoutException as exc:
                raise RuntimeError(f"the engine daemon at {self.url} did not answer within "
                                   f"{self.read_timeout_s:g} s (ECHOTUNE_ENGINE_READ_TIMEOUT_S) or "
                                   f"{self.connect_timeout_s:g} s to connect (ECHOTUNE_ENGINE_CONNECT_TIMEOUT_S)"
                                   ) from exc
            except httpx.HTTPError as exc:
                raise RuntimeError(f"the engine daemon at {self.url} is not reachable ({exc}); start it with "
                                   "`echotune-mcp engine serve` or unset ECHOTUNE_ENGINE_URL") from exc
            try:
                if response.status_code != 200:
                    try:
                        body = json.loads(await response.aread() or b"{}")
                    except (httpx.HTTPError, ValueError):
                        body = {}
                    if response.status_code == 503:
                        raise EngineBusy(body.get("error", "engine busy"), float(body.get("retry_after_s", 5)))
                    raise ValueError(body.get("error", f"engine daemon answered {response.status_code}"))
                lines = response.aiter_lines()
                first = await self._next_event(lines)
                if first["kind"] == "busy":
                    raise EngineBusy(first.get("error", "engine busy"), float(first.get("retry_after_s", 5)))
                if first["kind"] == "rejected":
                    raise ValueError(first.get("error", "the engine daemon refused the request"))
                if first["kind"] != "accepted":
                    raise RuntimeError(first.get("message") or f"the engine daemon answered {first['kind']!r}")
            except BaseException:
                await response.aclose()
                raise
        except BaseException:  # including cancellation while connecting or waiting: nothing left open
            await client.aclose()
            raise
        return RemoteHandle(self, client, response, lines, first.get("info", {}), first.get("request_id", ""))

    def downloaded(self, melody: bool = False) -> list[str]:
        """The MusicGen checkpoints the daemon has (empty when it cannot be reached)."""
        import httpx

        try:
            answer = httpx.get(f"{self.url}/v1/health", headers=self._headers(),
                               timeout=httpx.Timeout(3.0, connect=min(3.0, self.connect_timeout_s)))
            health = answer.json()
        except (httpx.HTTPError, ValueError):
            return []
        if answer.status_code != 200:  # e.g. 401: ECHOTUNE_ENGINE_TOKEN differs between the server and the daemon
            log.warning("the engine daemon at %s refused /v1/health: %s", self.url, health.get("error", answer.status_code))
            return []
        return list(health.get("melody" if melody else "musicgen") or [])
