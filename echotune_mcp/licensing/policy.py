"""The policy engine: rules from ``policy.toml`` applied to the factors of a lineage.

No licence knowledge lives in code: this module only matches factors to rules, takes the most
restrictive effect per use, and words the reasons (which ancestor, which licence) and the
guidance (what would make the use allowed). The rules are validated when loaded, so a typo in the
data fails at start-up rather than silently allowing something.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from . import catalog
from .factors import Factor

EFFECTS = ("allowed", "allowed_with_conditions", "not_allowed")  # least to most restrictive
FACTORS = ("weights", "soundfont", "source", "inbound_license", "output_license", "lineage")


class PolicyError(ValueError):
    """policy.toml is inconsistent; the message names the rule and what is wrong."""


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _fill(text: str, **values: str) -> str:
    return text.format_map(_Blank(values)) if text else text


@dataclass(frozen=True)
class Rule:
    id: str
    factor: str
    values: tuple[str, ...]
    explanation: str
    effects: dict[str, str]  # use -> effect (every use present)
    conditions: dict[str, str]  # use -> condition text (for allowed_with_conditions)
    remedy: str = ""
    output_licenses: tuple[str, ...] | None = None  # None: every choosable licence


@dataclass
class Reason:
    rule: str
    factor: str
    license: str
    artifact_id: str
    effect: str
    explanation: str
    condition: str | None = None
    remedy: str | None = None
    also_in: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "factor": self.factor, "license": self.license, "artifact_id": self.artifact_id,
                "effect": self.effect, "explanation": self.explanation, "condition": self.condition,
                "remedy": self.remedy, "also_in": self.also_in}


@dataclass
class Decision:
    use: str
    decision: str
    reasons: list[Reason]
    guidance: list[str]


@dataclass
class LicenseCheck:
    permitted: list[str]
    blockers: dict[str, list[Reason]]  # refused licence -> the reasons that exclude it


class Policy:
    def __init__(self, data: dict[str, Any]):
        self.uses: dict[str, str] = dict(data["uses"])
        self.choosable = tuple(lid for lid, spec in data["licenses"].items() if spec.get("choosable"))
        self.rules = [self._rule(r) for r in data["rules"]]
        self._check_coverage()

    # -- loading ----------------------------------------------------------------------------------
    def _rule(self, raw: dict[str, Any]) -> Rule:
        rid = raw.get("id", "?")
        if raw.get("factor") not in FACTORS:
            raise PolicyError(f"rule {rid}: factor must be one of {FACTORS}")
        spec_uses = dict(raw.get("uses", {}))
        unknown = set(spec_uses) - set(self.uses) - {"default"}
        if unknown:
            raise PolicyError(f"rule {rid}: unknown uses {sorted(unknown)}")
        effects: dict[str, str] = {}
        for use in self.uses:
            effect = spec_uses.get(use, spec_uses.get("default"))
            if effect not in EFFECTS:
                raise PolicyError(f"rule {rid}: use {use} has effect {effect!r}; expected one of {EFFECTS}")
            effects[use] = effect
        raw_cond = dict(raw.get("conditions", {}))
        conditions = {u: raw_cond.get(u, raw_cond.get("default", "")) for u in self.uses}
        for use, effect in effects.items():
            if effect == "allowed_with_conditions" and not conditions[use]:
                raise PolicyError(f"rule {rid}: use {use} is allowed_with_conditions but names no condition")
        outs = raw.get("output_licenses")
        if outs is not None:
            bad = set(outs) - set(self.choosable)
            if bad:
                raise PolicyError(f"rule {rid}: output_licenses {sorted(bad)} are not choosable licences")
        return Rule(id=rid, factor=raw["factor"], values=tuple(raw["values"]), explanation=raw["explanation"],
                    effects=effects, conditions={u: c for u, c in conditions.items() if c},
                    remedy=raw.get("remedy", ""), output_licenses=tuple(outs) if outs is not None else None)

    def _check_coverage(self) -> None:
        """Every factor kind needs a catch-all, so no factor value can slip past the rules."""
        for factor in FACTORS:
            if factor == "source":
                continue  # source values are a closed set produced by factors.py; each has its rule
            if not any(r.factor == factor and "*" in r.values for r in self.rules) and factor != "lineage":
                raise PolicyError(f"no catch-all ('*') rule for factor {factor}")

    # -- matching ---------------------------------------------------------------------------------
    def rule_for(self, factor: Factor) -> Rule:
        exact = [r for r in self.rules if r.factor == factor.factor and factor.value in r.values]
        if exact:
            return exact[0]
        wild = [r for r in self.rules if r.factor == factor.factor and "*" in r.values]
        if wild:
            return wild[0]
        raise PolicyError(f"no rule matches {factor.factor}={factor.value}; add one to policy.toml")

    def _grouped(self, factors: Iterable[Factor]) -> list[tuple[Rule, Factor, list[str]]]:
        """One entry per (rule, value): the first (nearest) artifact, plus where else it appears."""
        groups: dict[tuple[str, str], tuple[Rule, Factor, list[str]]] = {}
        for f in factors:
            rule = self.rule_for(f)
            key = (rule.id, f.value)
            if key in groups:
                if f.artifact_id != groups[key][1].artifact_id and f.artifact_id not in groups[key][2]:
                    groups[key][2].append(f.artifact_id)
            else:
                groups[key] = (rule, f, [])
        return list(groups.values())

    def _reason(self, rule: Rule, f: Factor, also: list[str], use: str) -> Reason:
        values = {"license": f.value, "artifact": f.artifact_id, "use": use}
        effect = rule.effects[use]
        return Reason(rule=rule.id, factor=f.factor, license=f.value, artifact_id=f.artifact_id, effect=effect,
                      explanation=_fill(rule.explanation, **values),
                      condition=_fill(rule.conditions.get(use, ""), **values) if effect != "allowed" else None,
                      remedy=_fill(rule.remedy, **values) or None if effect != "allowed" else None,
                      also_in=also[:20])

    # -- decisions --------------------------------------------------------------------------------
    def decide(self, factors: Sequence[Factor], use: str) -> Decision:
        if use not in self.uses:
            raise KeyError(use)
        reasons = [self._reason(rule, f, also, use) for rule, f, also in self._grouped(factors)]
        reasons.sort(key=lambda r: -EFFECTS.index(r.effect))
        decision = max((r.effect for r in reasons), key=EFFECTS.index, default="allowed")
        guidance: list[str] = []
        for r in reasons:
            if r.effect == "not_allowed" and r.remedy:
                guidance.append(r.remedy)
        for r in reasons:
            if r.effect == "allowed_with_conditions" and r.condition:
                guidance.append(f"condition: {r.condition}")
        if decision == "allowed":
            guidance.append(f"nothing in the lineage restricts {use}")
        return Decision(use=use, decision=decision, reasons=reasons, guidance=list(dict.fromkeys(guidance)))

    def check_output_licenses(self, factors: Sequence[Factor]) -> LicenseCheck:
        """Which licences the lineage lets the user choose, and for each refused one, why."""
        blockers: dict[str, list[Reason]] = {lid: [] for lid in self.choosable}
        for rule, f, also in self._grouped(x for x in factors if x.factor != "output_license"):
            if rule.output_licenses is None:
                continue
            for lid in self.choosable:
                if lid not in rule.output_licenses:
                    values = {"license": f.value, "artifact": f.artifact_id, "use": "publishing"}
                    blockers[lid].append(Reason(rule=rule.id, factor=f.factor, license=f.value,
                                                artifact_id=f.artifact_id, effect="not_allowed",
                                                explanation=_fill(rule.explanation, **values),
                                                remedy=_fill(rule.remedy, **values) or None, also_in=also[:20]))
        permitted = [lid for lid in self.choosable if not blockers[lid]]
        return LicenseCheck(permitted=permitted, blockers={k: v for k, v in blockers.items() if v})


@lru_cache(maxsize=4)
def load_policy(path: Path = catalog.POLICY_FILE) -> Policy:
    return Policy(catalog.load_policy_data(path))
