"""The client side of the engine daemon: the same ``generate``/``events``/``cancel`` surface as Engine."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from .engine import EngineEvent
from .scheduler import EngineBusy


def audio_to_b64(audio: np.ndarray) -> str:
    """float32 samples as base64, the daemon protocol's audio encoding (shape travels beside it)."""
    return base64.b64encode(np.ascontiguousarray(audio, dtype=np.float32).tobytes()).decode()


def audio_from_b64(data: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(data), dtype=np.float32)


class RemoteHandle:
    def __init__(self, client: Any, response: Any, lines: AsyncIterator[str], info: dict[str, Any], request_id: str):
        self._client, self._response, self._lines = client, response, lines
        self.info, self.id = info, request_id
        self.final: EngineEvent | None = None

    async def events(self) -> AsyncIterator[EngineEvent]:
        try:
            async for line in self._lines:
                if not line.strip():
                    continue
                data = json.loads(line)
                audio = audio_from_b64(data["audio_b64"]).reshape(int(data["channels"]), -1) \
                    if "audio_b64" in data else None
                event = EngineEvent(data["kind"], fraction=data.get("fraction", 0.0), message=data.get("message", ""),
                                    audio=audio, sample_rate=int(data.get("sample_rate", 0)))
                if event.kind in ("result", "error", "cancelled"):
                    self.final = event
                yield event
                if self.final is not None:
                    return
            if self.final is None:
                yield EngineEvent("error", message="the engine daemon closed the stream before the result")
        finally:
            await self.aclose()

    def cancel(self) -> None:
        asyncio.ensure_future(self.aclose())

    async def aclose(self) -> None:
        await self._response.aclose()
        await self._client.aclose()


class RemoteEngine:
    def __init__(self, url: str):
        self.url = url.rstrip("/")

    async def generate(self, **request: Any) -> RemoteHandle:
        import httpx

        for key in ("continuation", "melody"):
            clip = request.pop(key, None)
            if clip is not None:
                audio, sr = clip
                request[key] = {"audio_b64": audio_to_b64(audio), "sample_rate": sr}
        client = httpx.AsyncClient(timeout=httpx.Timeout(30.0, read=None))
        try:
            req = client.build_request("POST", f"{self.url}/v1/generate", json=request)
            response = await client.send(req, stream=True)
        except httpx.HTTPError as exc:
            await client.aclose()
            raise RuntimeError(f"the engine daemon at {self.url} is not reachable ({exc}); start it with "
                               "`echotune-mcp engine serve` or unset ECHOTUNE_ENGINE_URL") from exc
        if response.status_code != 200:
            body = json.loads(await response.aread() or b"{}")
            await response.aclose()
            await client.aclose()
            if response.status_code == 503:
                raise EngineBusy(body.get("error", "engine busy"), float(body.get("retry_after_s", 5)))
            raise ValueError(body.get("error", f"engine daemon answered {response.status_code}"))
        lines = response.aiter_lines()
        first = json.loads(await lines.__anext__())
        return RemoteHandle(client, response, lines, first.get("info", {}), first.get("request_id", ""))

    def downloaded(self, melody: bool = False) -> list[str]:
        """The MusicGen checkpoints the daemon has (empty when it cannot be reached)."""
        import httpx

        try:
            health = httpx.get(f"{self.url}/v1/health", timeout=3).json()
        except (httpx.HTTPError, ValueError):
            return []
        return list(health.get("melody" if melody else "musicgen") or [])
