"""Mobile ALOHA's base-action recipe (act-plus-plus), one home for both halves:

- Training: recorded base velocities are noisy (measured, pushed by hand), so they are smoothed by a centred moving
  average over `window` steps (the recipe: 5, `np.convolve(..., "same")`; 1 = unchanged). The recipe's zero-padded
  edges are replaced by a window that shrinks at the ends, so a constant velocity stays constant.
- Rollout: the base responds about `delay` control steps later than the arms (the recipe: 13). From a predicted chunk
  of k actions the arms take actions 0..k-d-1 and the base actions d..k-1, so the served chunk is k - d long
  (`delay_base_actions`). Temporal ensembling then averages these shortened chunks like any other; the original code
  mixed both lengths there and broke.

The base columns are found by name (`base_linear_vel`, `base_angular_vel`); an action without them is unchanged.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

BASE_ACTIONS = ("base_linear_vel", "base_angular_vel")


def base_columns(action_names: Sequence[str]) -> list[int]:
    return [i for i, name in enumerate(action_names) if name in BASE_ACTIONS]


def smooth_base_actions(actions: np.ndarray, action_names: Sequence[str], window: int = 5) -> np.ndarray:
    """(T, A) actions with the base columns smoothed by a centred moving average of `window` steps."""
    actions = np.asarray(actions)
    cols = base_columns(action_names)
    if window < 1:
        raise ValueError(f"smoothing window: expected >= 1 steps, got {window}")
    if window == 1 or not cols or len(actions) == 0:
        return actions.copy()
    out = actions.astype(np.float64, copy=True)
    kernel = np.ones(window)
    counts = np.convolve(np.ones(len(actions)), kernel, "same")  # how many real steps each window covers
    for c in cols:
        out[:, c] = np.convolve(out[:, c], kernel, "same") / counts
    return out.astype(actions.dtype)


def delay_base_actions(chunk: np.ndarray, action_names: Sequence[str], delay: int) -> np.ndarray:
    """(k, A) predicted chunk -> (k - delay, A): arm columns from the start, base columns `delay` steps later."""
    chunk = np.asarray(chunk)
    cols = base_columns(action_names)
    if delay == 0 or not cols:
        return chunk
    if not 0 < delay < len(chunk):
        raise ValueError(f"base delay: expected 0..{len(chunk) - 1} steps for a chunk of {len(chunk)}, got {delay}")
    out = chunk[: len(chunk) - delay].copy()
    out[:, cols] = chunk[delay:, cols]
    return out
