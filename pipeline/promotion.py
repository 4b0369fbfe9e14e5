"""The promotion gate: does a candidate beat the current champion? Pure logic, so it is easy to test and explain."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Scores:
    success_rate: float | None  # closed-loop, where a simulator exists; higher is better
    val_loss: float | None  # lower is better

    @property
    def primary(self) -> str:
        return "success_rate" if self.success_rate is not None else "val_loss"

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> "Scores":
        return cls(_float(tags.get("success_rate")), _float(tags.get("val_loss")))

    def to_tags(self) -> dict[str, str]:
        out = {}
        if self.success_rate is not None:
            out["success_rate"] = repr(float(self.success_rate))
        if self.val_loss is not None:
            out["val_loss"] = repr(float(self.val_loss))
        return out


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def _float(value) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


@dataclass(frozen=True)
class Floor:
    """What any candidate must reach before it is compared at all, first one included."""

    success_rate: float = 0.0  # closed-loop success must be ABOVE this where measured (0.0: a 0% policy never ships)
    val_loss: float | None = None  # where validation loss is the primary metric: at most this (None: no ceiling)

    def refusal(self, candidate: Scores) -> str | None:
        if candidate.success_rate is not None:
            if candidate.success_rate <= self.success_rate:
                return f"success rate {candidate.success_rate:.1%} is not above the floor of {self.success_rate:.1%}"
        elif self.val_loss is not None and (candidate.val_loss is None or candidate.val_loss > self.val_loss):
            got = "none" if candidate.val_loss is None else f"{candidate.val_loss:.4g}"
            return f"validation loss {got} is above the ceiling of {self.val_loss:.4g}"
        return None


def decide(candidate: Scores, champion: Scores | None, champion_label: str = "champion",
           floor: Floor = Floor()) -> Decision:
    """Promote only above the floor, and when strictly better on the primary metric (success rate where measured,
    else validation loss). An equal primary score falls back to validation loss, so ties never flip the champion
    at random."""
    refused = floor.refusal(candidate)
    if refused:
        return Decision(False, refused)
    if champion is None:
        return Decision(True, f"no {champion_label} yet: the first candidate becomes it")
    if candidate.success_rate is not None and champion.success_rate is not None:
        c, k = candidate.success_rate, champion.success_rate
        if c > k:
            return Decision(True, f"success rate {c:.1%} > {champion_label}'s {k:.1%}")
        if c < k:
            return Decision(False, f"success rate {c:.1%} < {champion_label}'s {k:.1%}")
        tie = f"success rate ties at {c:.1%}; "
    elif candidate.success_rate is not None or champion.success_rate is not None:
        # One of them was never evaluated in closed loop: the only common ground is validation loss.
        tie = "success rates not comparable; "
    else:
        tie = ""
    c, k = candidate.val_loss, champion.val_loss
    if c is None:
        return Decision(False, tie + "candidate has no validation loss")
    if k is None:
        return Decision(True, tie + f"{champion_label} has no validation loss; candidate has {c:.4g}")
    if c < k:
        return Decision(True, tie + f"validation loss {c:.4g} < {champion_label}'s {k:.4g}")
    return Decision(False, tie + f"validation loss {c:.4g} >= {champion_label}'s {k:.4g}")


def promotion_record(version: int | str, scores: Scores, decision: Decision, **context: object) -> dict:
    """What a promoted bundle was promoted on, as written beside it and printed by `aloha pull`."""
    return {
        "version": int(version),
        "primary_metric": scores.primary,
        "success_rate": scores.success_rate,
        "val_loss": scores.val_loss,
        "reason": decision.reason,
        **context,
    }


def describe_record(record: dict) -> str:
    """One line for people: the scores a bundle was promoted on and why."""
    scores = []
    if record.get("success_rate") is not None:
        scores.append(f"success rate {float(record['success_rate']):.1%}")
    if record.get("val_loss") is not None:
        scores.append(f"validation loss {float(record['val_loss']):.4g}")
    primary = f" (primary: {record['primary_metric']})" if record.get("primary_metric") else ""
    return f"{', '.join(scores) or 'no scores'}{primary}: {record.get('reason', '?')}"
