"""Licence facts about one artifact, read from its provenance and attestation.

The policy rules never look at provenance directly; they match *factors* (``weights=CC-BY-NC-4.0``,
``soundfont=GPL-2.0-or-later``, ``source=upload_unattested``, ...). Keeping the extraction here
means the provenance layout can grow without touching the rules.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..storage.records import ArtifactRecord
from . import catalog
from .model_cards import read_card

# Types of outside material whose rights the server cannot know (set by import_audio, audio_inputs).
UNKNOWN_RIGHTS_SOURCES = ("upload", "local_file", "url", "external")
PROVIDER_SOURCES = ("provider", "provider_track")
NO_WEIGHTS_BACKENDS = ("composer", "dsp", "none")
ATTESTATION_KEY = "rights_attestation"


@dataclass(frozen=True)
class Factor:
    factor: str  # weights | soundfont | source | inbound_license | output_license | lineage
    value: str
    artifact_id: str
    detail: str = ""


def _license_value(raw: Any) -> str:
    """A catalogue id where recognised, else the raw text, else ``unknown``."""
    if isinstance(raw, dict):
        raw = raw.get("id")
    if not raw or str(raw).lower() == "unknown":
        return "unknown"
    return catalog.normalize(str(raw)) or str(raw)


def weights_license(provenance: dict[str, Any], card_dirs: Iterable[Path]) -> tuple[str, str]:
    """(licence value, where it came from) for the model weights named in ``provenance``.

    ``none`` when no trained weights were involved. The model card wins over provenance.
    """
    model = provenance.get("model")
    backend = provenance.get("backend")
    if not isinstance(model, dict):
        if backend in (None, *NO_WEIGHTS_BACKENDS):
            return "none", "no model in provenance"
        return "unknown", f"backend {backend!r} recorded no model"
    if model.get("backend") in NO_WEIGHTS_BACKENDS or model.get("model_id") == "echotune-composer":
        return "none", f"model {model.get('model_id')!r} has no trained weights"
    card = read_card(model.get("model_id"), card_dirs)
    if card and card.license:
        return _license_value(card.license), f"model card {card.path}"
    if str(model.get("weights_license") or "").lower() == "none":
        return "none", "provenance says the model has no weights"
    return _license_value(model.get("weights_license")), "provenance model.weights_license"


SOURCE_KEYS = ("source", "input", "melody_input")  # where tools record outside material they read


def _sources(provenance: dict[str, Any]) -> list[dict[str, Any]]:
    """Outside material recorded in provenance: ``source`` (an upload), ``input``/``melody_input`` (what a
    separation, remix or continuation read: one or a list), and URI-only ``inputs``."""
    items: list[Any] = []
    for key in SOURCE_KEYS:
        raw = provenance.get(key)
        items += raw if isinstance(raw, list) else [raw]
    items = [s for s in items if isinstance(s, dict)]
    for inp in provenance.get("inputs") or []:
        if isinstance(inp, dict) and inp.get("uri") and not inp.get("artifact_id"):
            items.append({"type": inp.get("type", "external"), **inp})
    return items


def _source_factors(record: ArtifactRecord, prov: dict[str, Any]) -> list[Factor]:
    sources = _sources(prov)
    provider = [s for s in sources if s.get("type") in PROVIDER_SOURCES]
    unknown = [s for s in sources if s.get("type") in UNKNOWN_RIGHTS_SOURCES and s.get("rights", "unknown") == "unknown"]
    if prov.get("rights") == "unknown" and not unknown:
        unknown = [{"type": "upload"}]
    out = [Factor("source", "provider_track", record.id, str(s.get("uri") or s.get("track_id") or "")) for s in provider]
    if not unknown:
        return out
    attestation = (record.meta or {}).get(ATTESTATION_KEY)
    if not isinstance(attestation, dict):
        kinds = ", ".join(sorted({str(s.get("type")) for s in unknown}))
        return [*out, Factor("source", "upload_unattested", record.id, kinds)]
    rights = attestation.get("rights")
    out.append(Factor("source", f"attested_{rights}", record.id, f"attested by {attestation.get('holder')}"))
    if rights == "licensed":
        out.append(Factor("inbound_license", _license_value(record.license), record.id,
                          f"licensed from {attestation.get('holder')}"))
    return out


def factors_of(record: ArtifactRecord, card_dirs: Iterable[Path], *, is_root: bool) -> list[Factor]:
    """Every licence fact this one artifact contributes to a lineage check."""
    prov = record.provenance or {}
    out: list[Factor] = []
    if "model" in prov or (prov.get("backend") and prov.get("backend") not in NO_WEIGHTS_BACKENDS):
        value, where = weights_license(prov, card_dirs)
        out.append(Factor("weights", value, record.id, where))
    if prov.get("soundfont"):
        sf = prov["soundfont"]
        name = sf.get("name", "") if isinstance(sf, dict) else ""
        out.append(Factor("soundfont", _license_value(sf.get("license") if isinstance(sf, dict) else None),
                          record.id, name))
    out.extend(_source_factors(record, prov))
    if is_root and record.license:
        out.append(Factor("output_license", _license_value(record.license), record.id))
    return out
