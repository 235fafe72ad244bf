"""Provenance helpers: summaries for the lineage graph, file tags, and the completeness check.

Provenance itself is written by ``ArtifactService.create`` in the artifact's own document (one
write, so it can never disagree with the artifact). These helpers only read it, and stamp the
model card's licence/revision into it before creation when a tool asks (``complete_provenance``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..artifacts import package_version
from ..config import MODEL_CARDS_DIR, Settings
from ..storage.records import ArtifactRecord
from . import catalog
from .factors import ATTESTATION_KEY, weights_license
from .model_cards import read_card

PROMPT_CHARS = 300
GENERATORS = ("composer", "musicgen")


def card_dirs(settings: Settings) -> tuple[Path, ...]:
    """Where model cards are looked up: the bundled ``models/``, then the weights directory."""
    return (MODEL_CARDS_DIR, settings.weights_dir)


def complete_provenance(provenance: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """A copy of ``provenance`` with the model card's weights licence and revision filled in.

    Tools call this before ``ArtifactService.create`` so the stored record carries what the card
    said at generation time (cards can be corrected later; the record shows what was believed).
    """
    out = copy.deepcopy(provenance)
    model = out.get("model")
    if isinstance(model, dict) and model.get("model_id"):
        card = read_card(model["model_id"], card_dirs(settings))
        if card:
            model.setdefault("weights_license", None)
            model.setdefault("weights_revision", None)
            model["weights_license"] = model["weights_license"] or card.license
            model["weights_revision"] = model["weights_revision"] or card.revision
            model["card"] = card.path
    return out


def summarize(record: ArtifactRecord, dirs: Iterable[Path]) -> dict[str, Any]:
    """What an agent needs about one node of the lineage, without the whole provenance document."""
    prov = record.provenance or {}
    model = prov.get("model") if isinstance(prov.get("model"), dict) else None
    sf = prov.get("soundfont") if isinstance(prov.get("soundfont"), dict) else None
    prompt = prov.get("prompt")
    out: dict[str, Any] = {
        "tool": prov.get("tool"), "job_id": record.job_id, "owner": prov.get("owner", record.owner),
        "created_at": record.created_at, "backend": prov.get("backend"),
        "prompt": prompt[:PROMPT_CHARS] if isinstance(prompt, str) else prompt,
        "seed": prov.get("seed"), "parameters": prov.get("parameters"),
        "inputs": prov.get("inputs", []), "source": prov.get("source"), "rights": prov.get("rights"),
        "package": prov.get("package"), "license": record.license,
        "rights_attestation": (record.meta or {}).get(ATTESTATION_KEY),
    }
    if model is not None or prov.get("backend"):
        lic, where = weights_license(prov, dirs)
        card = read_card(model.get("model_id"), dirs) if model else None
        out["model"] = {"model_id": (model or {}).get("model_id"), "weights_license": lic, "license_from": where,
                        # the revision actually pulled (provenance) beats the card's requested ref (e.g. "main")
                        "weights_revision": (model or {}).get("weights_revision")
                        or (card.revision if card and card.revision else None)}
    if sf is not None:
        lic = sf.get("license")
        out["soundfont"] = {"name": sf.get("name"), "sha256": sf.get("sha256"),
                            "license": lic.get("id") if isinstance(lic, dict) else lic}
    return out


def file_tags(provenance: dict[str, Any], license: str | None) -> dict[str, str]:
    """Tags for ``encode_audio``: the licence and the generator, in the file's own metadata.

    WAV INFO has no licence field, so the licence also goes into ``copyright`` (ICOP); FLAC/OGG get
    a ``LICENSE`` Vorbis comment too. The signed sidecar manifest stays the authoritative record.
    """
    lic_id = catalog.normalize(license) or license
    lic = catalog.licenses().get(lic_id) if lic_id else None
    if lic is not None:
        licence_text = f"{lic.name}" + (f" ({lic.url})" if lic.url else "")
    elif lic_id:
        licence_text = lic_id
    else:
        licence_text = "no licence chosen yet: all rights reserved; check_usage before release"
    prov = provenance or {}
    model = prov.get("model") if isinstance(prov.get("model"), dict) else {}
    sf = prov.get("soundfont") if isinstance(prov.get("soundfont"), dict) else {}
    parts = [f"made with EchoTune MCP {package_version()}"]
    if prov.get("tool"):
        parts.append(f"tool {prov['tool']}")
    if prov.get("backend"):
        parts.append(f"backend {prov['backend']}")
    if model.get("model_id"):
        parts.append(f"model {model['model_id']}" + (f" (weights {model['weights_license']})"
                                                    if model.get("weights_license") else ""))
    if sf.get("name"):
        sf_lic = sf.get("license")
        sf_id = sf_lic.get("id") if isinstance(sf_lic, dict) else sf_lic
        parts.append(f"soundfont {sf['name']} ({sf_id or 'unknown licence'})")
    if prov.get("seed") is not None:
        parts.append(f"seed {prov['seed']}")
    parts.append("signed content credentials: the artifact's manifest")
    return {"software": f"EchoTune MCP {package_version()}", "comment": "; ".join(parts),
            "copyright": f"License: {licence_text}", "license": lic_id or "unspecified"}


def provenance_gaps(record: ArtifactRecord) -> list[str]:
    """The fields a complete provenance record lacks (empty list = complete)."""
    prov = record.provenance
    if not isinstance(prov, dict):
        return ["provenance (missing entirely)"]
    gaps = [k for k in ("artifact_id", "created_at", "owner", "sha256", "inputs", "package", "tool") if not prov.get(k)
            and not (k == "inputs" and prov.get(k) == [])]
    if "job_id" not in prov:
        gaps.append("job_id")
    if prov.get("artifact_id") not in (None, record.id):
        gaps.append("artifact_id (differs from the record)")
    if prov.get("sha256") not in (None, record.sha256):
        gaps.append("sha256 (differs from the record)")
    inputs = prov.get("inputs") or []
    if sorted(i.get("artifact_id") for i in inputs if i.get("artifact_id")) != sorted(record.parents):
        gaps.append("inputs (do not list exactly the parents)")
    if any(i.get("artifact_id") and not i.get("sha256") for i in inputs):
        gaps.append("inputs[].sha256")
    pkg = prov.get("package") or {}
    if not (pkg.get("name") and pkg.get("version")):
        gaps.append("package.name/version")
    source = prov.get("source")
    if isinstance(source, dict) and source.get("type") in ("upload", "local_file"):
        if "rights" not in prov and "rights" not in source:
            gaps.append("rights (outside material must say its rights are unknown or attested)")
    elif prov.get("backend"):
        model = prov.get("model")
        if model is None and "model" in prov and prov.get("backend") in ("dsp", "none"):
            pass  # signal processing without a trained model says so explicitly with model: null
        elif not isinstance(model, dict):
            gaps.append("model")
        else:
            gaps += [f"model.{k}" for k in ("model_id", "backend", "weights_license") if k not in model]
            if prov.get("backend") != "composer" and "weights_revision" not in model:
                gaps.append("model.weights_revision")
        gaps += [k for k in ("parameters",) if k not in prov]
        if prov.get("backend") in GENERATORS:  # made from a text prompt and a seed
            gaps += [k for k in ("prompt", "seed") if k not in prov]
        if prov.get("backend") == "composer" or "soundfont" in prov:
            sf = prov.get("soundfont")
            if not isinstance(sf, dict):
                gaps.append("soundfont")
            else:
                gaps += [f"soundfont.{k}" for k in ("path", "name", "sha256", "license") if not sf.get(k)]
    return gaps


def assert_provenance_complete(record: ArtifactRecord) -> None:
    """For tests that walk every artifact-making tool: fail naming each missing provenance field."""
    gaps = provenance_gaps(record)
    assert not gaps, f"artifact {record.id} ({record.kind}, tool {(record.provenance or {}).get('tool')}) " \
                     f"has incomplete provenance: {', '.join(gaps)}"
