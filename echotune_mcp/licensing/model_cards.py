"""Model cards: the authoritative record of a model's weights licence and revision.

The engine writes a card per model into ``models/`` (bundled) or the weights directory. A card is
read in preference to what a job wrote into provenance, because the card is what a reviewer
checks and corrects; provenance is the fallback for models without a card.

Accepted card files, for a model id such as ``facebook/musicgen-small``: ``<id>``, ``<id with / as
__ or -->`` or ``<last path part>`` with the extension ``.json``, ``.toml`` or ``.md`` (front matter
in YAML ``---`` or TOML ``+++``). Keys: ``license`` or ``weights_license``; ``revision`` or
``weights_revision`` (top level, or inside a ``weights`` table).
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class CardInfo:
    license: str | None
    revision: str | None
    path: str


def _candidates(model_id: str) -> list[str]:
    names = [model_id, model_id.replace("/", "__"), model_id.replace("/", "--"), model_id.rsplit("/", 1)[-1]]
    return list(dict.fromkeys(n for n in names if n and ".." not in n))


def _front_matter(text: str) -> dict[str, Any]:
    if text.startswith("+++\n") and "\n+++" in text[4:]:
        return tomllib.loads(text[4:].split("\n+++", 1)[0])
    if text.startswith("---\n") and "\n---" in text[4:]:
        block = text[4:].split("\n---", 1)[0]
        out: dict[str, Any] = {}
        for line in block.splitlines():  # flat "key: value" lines are all a card needs; no YAML dependency
            m = re.match(r"^([A-Za-z_]+)\s*:\s*(.+?)\s*$", line)
            if m:
                out[m.group(1)] = m.group(2).strip("'\"")
        return out
    return {}


def _parse(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return json.loads(text)
    if path.suffix == ".toml":
        return tomllib.loads(text)
    return _front_matter(text)


def read_card(model_id: str | None, dirs: Iterable[Path]) -> CardInfo | None:
    """The card for ``model_id`` in the first directory that has one, or None."""
    if not model_id:
        return None
    for directory in dirs:
        for name in _candidates(model_id):
            for ext in (".json", ".toml", ".md"):
                path = Path(directory) / f"{name}{ext}"
                if not path.is_file():
                    continue
                try:
                    data = _parse(path)
                except (ValueError, OSError):  # an unreadable card is no card; provenance still applies
                    continue
                weights = data.get("weights") if isinstance(data.get("weights"), dict) else {}
                lic = data.get("weights_license") or data.get("license") or weights.get("license")
                rev = data.get("weights_revision") or data.get("revision") or weights.get("revision")
                return CardInfo(license=str(lic) if lic else None, revision=str(rev) if rev else None, path=str(path))
    return None
