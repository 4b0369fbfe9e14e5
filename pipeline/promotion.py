"""The promotion gate: does a candidate beat the current champion? Pure logic, so it is easy to test and explain."""

from __future__ import annotations

import math
from dataclasses import dataclass

from assets_store.rollouts import wilson_interval


@dataclass(frozen=True)
class RealSuccess:
    """Labelled rollouts of one bundle on the robot (`assets_store.rollouts.labelled_rollouts`): successes of n."""

    successes: int
    rollouts: int

    @property
    def rate(self) -> float | None:
        return self.successes / self.rollouts if self.rollouts else None

    def __str__(self) -> str:
        if not self.rollouts:
            return "0 labelled rollouts"
        lo, hi = wilson_interval(self.successes, self.rollouts)
        return f"{self.successes}/{self.rollouts} ({self.rate:.0%}, 95% CI {lo:.0%}-{hi:.0%})"


@dataclass(frozen=True)
class Scores:
    success_rate: float | None  # closed-loop, where a simulator exists; higher is better
    val_loss: float | None  # lower is better
    real: RealSuccess | None = None  # labelled rollouts on the robot, counted when the gate runs

    @property
    def primary(self) -> str:
        return "success_rate" if self.success_rate is not None else "val_loss"

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> "Scores":
        successes, rollouts = _int(tags.get("real_successes")), _int(tags.get("real_rollouts"))
        real = RealSuccess(successes, rollouts) if successes is not None and rollouts is not None else None
        return cls(_float(tags.get("success_rate")), _float(tags.get("val_loss")), real)

    def to_tags(self) -> dict[str, str]:
        out = {}
        if self.success_rate is not None:
            out["success_rate"] = repr(float(self.success_rate))
        if self.val_loss is not None:
            out["val_loss"] = repr(float(self.val_loss))
        if self.real is not None:
            out["real_successes"] = str(self.real.successes)
            out["real_rollouts"] = str(self.real.rollouts)
        return out


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str  # starts with the rule that decided, in words: "real success: candidate 9/10 ..."
    rule: str = ""  # one of RULES


# Which rule decided, as recorded in asset metadata, MLflow tags and the promotion record.
REAL_SUCCESS, SIM_SUCCESS, VAL_LOSS, FLOOR, FIRST, FORCED = (
    "real_success", "sim_success", "val_loss", "floor", "first", "forced")
RULES = {REAL_SUCCESS: "real success", SIM_SUCCESS: "simulator success", VAL_LOSS: "validation loss",
         FLOOR: "floor", FIRST: "first candidate", FORCED: "forced by run config"}
DEFAULT_MIN_REAL_ROLLOUTS = 10


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


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
           floor: Floor = Floor(), min_real_rollouts: int = DEFAULT_MIN_REAL_ROLLOUTS) -> Decision:
    """Real success decides when both the candidate and the champion have at least `min_real_rollouts` labelled
    rollouts on the robot (it must be above the floor and strictly better). Otherwise, and on a tie, the offline
    rule: above the floor, then strictly better on success rate where a simulator measured both, else on
    validation loss. The reason starts with the rule that decided and says why the real rule did not."""
    if champion is not None:
        short = _too_few_real(candidate, champion, champion_label, min_real_rollouts)
        if not short:
            c, k = candidate.real, champion.real
            decided = _by_real_success(c, k, champion_label, floor)
            if decided is not None:
                return decided
            short = f"real success ties ({c} vs {champion_label}'s {k})"
        offline = _offline(candidate, champion, champion_label, floor)
        return Decision(offline.promote, f"{RULES[offline.rule]}: {short}; {offline.reason}", offline.rule)
    offline = _offline(candidate, champion, champion_label, floor)
    return Decision(offline.promote, f"{RULES[offline.rule]}: {offline.reason}", offline.rule)


def _too_few_real(candidate: Scores, champion: Scores, champion_label: str, minimum: int) -> str:
    """Why real success cannot decide, '' when it can."""
    for who, scores in (("the candidate", candidate), (champion_label, champion)):
        n = scores.real.rollouts if scores.real is not None else 0
        if n < max(minimum, 1):
            return f"only {n} labelled real rollouts of {who} (< {max(minimum, 1)})"
    return ""


def _by_real_success(c: RealSuccess, k: RealSuccess, champion_label: str, floor: Floor) -> Decision | None:
    """The real rule's decision; None on a tie."""
    if c.rate <= floor.success_rate:
        return Decision(False, f"{RULES[REAL_SUCCESS]}: candidate {c} is not above the floor of "
                               f"{floor.success_rate:.1%}", REAL_SUCCESS)
    if c.rate == k.rate:
        return None
    better = c.rate > k.rate
    return Decision(better, f"{RULES[REAL_SUCCESS]}: candidate {c} {'>' if better else '<'} {champion_label} {k}",
                    REAL_SUCCESS)


def _offline(candidate: Scores, champion: Scores | None, champion_label: str, floor: Floor) -> Decision:
    """The rule without real rollouts: the floor, then simulator success where both were measured, else (and on a
    tie) validation loss. Ties never flip the champion at random."""
    refused = floor.refusal(candidate)
    if refused:
        return Decision(False, refused, FLOOR)
    if champion is None:
        return Decision(True, f"no {champion_label} yet: the first candidate becomes it", FIRST)
    if candidate.success_rate is not None and champion.success_rate is not None:
        c, k = candidate.success_rate, champion.success_rate
        if c > k:
            return Decision(True, f"success rate {c:.1%} > {champion_label}'s {k:.1%}", SIM_SUCCESS)
        if c < k:
            return Decision(False, f"success rate {c:.1%} < {champion_label}'s {k:.1%}", SIM_SUCCESS)
        tie = f"success rate ties at {c:.1%}; "
    elif candidate.success_rate is not None or champion.success_rate is not None:
        # One of them was never evaluated in closed loop: the only common ground is validation loss.
        tie = "success rates not comparable; "
    else:
        tie = ""
    c, k = candidate.val_loss, champion.val_loss
    if c is None:
        return Decision(False, tie + "candidate has no validation loss", VAL_LOSS)
    if k is None:
        return Decision(True, tie + f"{champion_label} has no validation loss; candidate has {c:.4g}", VAL_LOSS)
    if c < k:
        return Decision(True, tie + f"validation loss {c:.4g} < {champion_label}'s {k:.4g}", VAL_LOSS)
    return Decision(False, tie + f"validation loss {c:.4g} >= {champion_label}'s {k:.4g}", VAL_LOSS)


def promotion_record(version: int | str, scores: Scores, decision: Decision, **context: object) -> dict:
    """What a promoted bundle was promoted on, as written beside it and printed by `aloha pull`."""
    return {
        "version": int(version),
        "primary_metric": scores.primary,
        "success_rate": scores.success_rate,
        "val_loss": scores.val_loss,
        "real_successes": scores.real.successes if scores.real is not None else None,
        "real_rollouts": scores.real.rollouts if scores.real is not None else None,
        "rule": decision.rule or None,
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
    if record.get("real_rollouts"):
        scores.append(f"real success {RealSuccess(int(record['real_successes']), int(record['real_rollouts']))}")
    if record.get("rule") in RULES:
        primary = f" (decided by {RULES[record['rule']]})"
    else:  # records written before the rule was recorded
        primary = f" (primary: {record['primary_metric']})" if record.get("primary_metric") else ""
    return f"{', '.join(scores) or 'no scores'}{primary}: {record.get('reason', '?')}"
