"""Model cards (``models/<id>.toml``): one file per model with its source, revision, licence and size.

The cards are the single place the server learns what a model is: the model manager downloads from
``hf_repo`` at ``revision``, budgets memory with ``memory_mb``, and licensing reads ``license``.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..config import MODEL_CARDS_DIR


@dataclass(frozen=True)
class ModelCard:
    id: str
    backend: str
    hf_repo: str
    revision: str
    license: str
    parameters: int
    memory_mb: int
    sample_rate: int
    description: str
    sources: tuple[str, ...] = field(default_factory=tuple)
    path: Path | None = None


def load_card(path: Path) -> ModelCard:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    missing = [k for k in ("id", "backend", "hf_repo", "revision", "license", "parameters", "memory_mb") if k not in data]
    if missing:
        raise ValueError(f"model card {path} lacks {', '.join(missing)}")
    return ModelCard(id=data["id"], backend=data["backend"], hf_repo=data["hf_repo"], revision=data["revision"],
                     license=data["license"], parameters=int(data["parameters"]), memory_mb=int(data["memory_mb"]),
                     sample_rate=int(data.get("sample_rate", 0)), description=data.get("description", ""),
                     sources=tuple(data.get("sources", ())), path=path)


def load_cards(directory: Path = MODEL_CARDS_DIR) -> dict[str, ModelCard]:
    cards = {}
    for path in sorted(directory.glob("*.toml")):
        card = load_card(path)
        if card.id in cards:
            raise ValueError(f"two model cards claim id {card.id!r}: {cards[card.id].path} and {path}")
        cards[card.id] = card
    return cards
