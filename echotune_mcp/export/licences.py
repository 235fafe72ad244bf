"""The licence facts of an export: per exported file, and for the archive as a whole.

The archive's parents are every artifact it was made from, so ``check_usage`` on it walks their whole
lineage (soundfont, model weights, outside audio) like for any other artifact. Here the same facts are
read once more to be written into the archive's README and the tool's result, and to give the archive
the most restrictive licence its parts carry: only when every exported file has a chosen licence (a
part without one is "all rights reserved until chosen", so the export has none either), and only when
the whole lineage permits that licence; otherwise it has none and the result says why.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..licensing import Licensing
from ..licensing import catalog

if TYPE_CHECKING:
    from ..app import App
    from .session import Session

# From least to most restrictive for someone receiving the file (the choosable catalogue licences).
RESTRICTIVENESS = ("CC0-1.0", "CC-BY-4.0", "CC-BY-SA-4.0", "CC-BY-NC-4.0", "all-rights-reserved")
UNCHOSEN = "no licence chosen yet: all rights reserved; check_usage before release"


def _rank(license_id: str) -> int:
    lid = catalog.normalize(license_id) or license_id
    return RESTRICTIVENESS.index(lid) if lid in RESTRICTIVENESS else len(RESTRICTIVENESS)


def _lines(factors: list[Any], license_id: str | None) -> list[str]:
    """Short, human lines for one file: its chosen licence and the lineage facts that bind it."""
    seen: dict[str, set[str]] = {}
    for f in factors:
        if f.factor in ("weights", "soundfont", "source", "inbound_license", "lineage"):
            seen.setdefault(f.factor, set()).add(f.value + (f" ({f.detail})" if f.factor == "soundfont" and f.detail
                                                            else ""))
    out = [f"licence: {license_id or UNCHOSEN}"]
    labels = {"weights": "model weights licence", "soundfont": "soundfont licence", "source": "outside material",
              "inbound_license": "licence of licensed material", "lineage": "lineage"}
    for key, label in labels.items():
        if key in seen:
            out.append(f"{label}: {', '.join(sorted(seen[key]))}")
    return out


async def licence_report(app: App, owner: str, session: Session) -> dict[str, Any]:
    lic = Licensing(app)
    per: dict[str, Any] = {}
    union: list[Any] = []
    for art_id in session.parents:
        rec = await app.artifacts.get(owner, art_id)
        factors, _ = await lic.factors(owner, rec)
        union += [f for f in factors if f.factor != "output_license"]
        per[rec.id] = {"license": rec.license, "lines": _lines(factors, rec.license)}
    decisions = {use: lic.policy.decide(union, use).decision for use in lic.policy.uses}
    permitted = lic.policy.check_output_licenses(union).permitted
    chosen = [t.record.license for t in session.tracks]
    export_license, why = None, "the exported files have no licence chosen; all rights are reserved until one is"
    if chosen and all(chosen):
        strictest = catalog.normalize(max(chosen, key=_rank)) or max(chosen, key=_rank)
        if strictest in permitted:
            export_license, why = strictest, "the most restrictive licence among the exported files"
        else:
            why = (f"the most restrictive licence of the files, {strictest}, is not permitted for their combined "
                   f"lineage (permitted: {', '.join(permitted) or 'none'}); choose one with set_license")
    elif any(chosen):
        why = "some exported files have no licence chosen (all rights reserved until one is), so the export has none"
    text = f"{export_license} ({why})" if export_license else f"none ({why})"
    return {"artifacts": per, "uses": decisions, "permitted_licenses": permitted, "export_license": export_license,
            "export_license_reason": why, "export_license_text": text}
