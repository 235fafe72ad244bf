"""The licence catalogue and the list of intended uses, read from ``policy.toml``.

Both live in the same data file as the rules so a policy reviewer edits one place; this module
only parses them and answers "which licence is this id?" (ids are matched case-insensitively and
through aliases, because model cards write ``cc-by-nc-4.0`` and people write ``CC-BY-NC``).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

POLICY_FILE = Path(__file__).with_name("policy.toml")


@dataclass(frozen=True)
class License:
    id: str
    name: str
    url: str
    commercial_use: bool
    derivatives: bool
    attribution: bool
    share_alike: bool
    choosable: bool  # a user may pick it for an output with set_license
    aliases: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "url": self.url or None, "commercial_use": self.commercial_use,
                "derivatives": self.derivatives, "attribution": self.attribution, "share_alike": self.share_alike,
                "choosable_for_outputs": self.choosable}


@lru_cache(maxsize=4)
def load_policy_data(path: Path = POLICY_FILE) -> dict[str, Any]:
    with path.open("rb") as fh:
        return tomllib.load(fh)


@lru_cache(maxsize=4)
def licenses(path: Path = POLICY_FILE) -> dict[str, License]:
    data = load_policy_data(path)
    out: dict[str, License] = {}
    for lid, spec in data["licenses"].items():
        out[lid] = License(id=lid, name=spec["name"], url=spec.get("url", ""),
                           commercial_use=bool(spec["commercial_use"]), derivatives=bool(spec["derivatives"]),
                           attribution=bool(spec["attribution"]), share_alike=bool(spec["share_alike"]),
                           choosable=bool(spec.get("choosable", False)), aliases=tuple(spec.get("aliases", ())))
    return out


def choosable_ids(path: Path = POLICY_FILE) -> tuple[str, ...]:
    """Licences a user may give an output, in catalogue order."""
    return tuple(lid for lid, lic in licenses(path).items() if lic.choosable)


def uses(path: Path = POLICY_FILE) -> dict[str, str]:
    """Intended use id -> plain description."""
    return dict(load_policy_data(path)["uses"])


def normalize(license_id: str | None, path: Path = POLICY_FILE) -> str | None:
    """The catalogue id for ``license_id`` (case-insensitive, aliases accepted), or None if unknown."""
    if not license_id:
        return None
    want = license_id.strip().lower()
    for lid, lic in licenses(path).items():
        if want == lid.lower() or want in (a.lower() for a in lic.aliases):
            return lid
    return None
