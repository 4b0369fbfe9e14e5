"""Log lines while policy_evaluation rolls out: a line per episode, and one every `every_s` seconds within an
episode, each with the step rate, so a long evaluation in the Dagster UI shows it is moving and how fast."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from hardware.rollout import RolloutEpisode
from pipeline import metadata_format as fmt


@dataclass
class RolloutProgress:
    log: Callable[[str], None]
    episodes: int  # how many rollouts are planned
    steps_per_episode: int  # at most (an episode ends early once it succeeds)
    every_s: float = 15.0
    clock: Callable[[], float] = time.monotonic
    _start: Optional[float] = field(default=None, init=False)  # the first step: loading the policy is not rolling out
    _last_line: float = field(default=0.0, init=False)
    _finished: int = field(default=0, init=False)  # episodes
    _steps_before: int = field(default=0, init=False)  # steps of the finished episodes
    _steps_now: int = field(default=0, init=False)  # steps of the current episode

    def steps_per_s(self) -> float:
        if self._start is None:
            return 0.0
        # the steps after the first one, over the time since it
        return max(self._steps_before + self._steps_now - 1, 0) / max(self.clock() - self._start, 1e-9)

    def on_step(self, steps_done: int) -> None:
        """run_rollouts' per-step callback: the steps done in the current episode."""
        now = self.clock()
        if self._start is None:
            self._start = self._last_line = now
        self._steps_now = steps_done
        if now - self._last_line >= self.every_s:
            self._last_line = now
            self.log(f"rollout {self._finished + 1}/{self.episodes}: step {steps_done}/{self.steps_per_episode}, "
                     f"{self.steps_per_s():.1f} steps/s")

    def on_episode(self, ep: RolloutEpisode) -> None:
        """run_rollouts' per-episode callback."""
        self._finished += 1
        self._steps_before += ep.steps
        self._steps_now = 0
        self._last_line = self.clock()
        self.log(f"rollout {self._finished}/{self.episodes} seed {ep.seed}: success={ep.success} "
                 f"max_reward={ep.max_reward}, {ep.steps} steps in {fmt.duration(ep.seconds)}, "
                 f"{self.steps_per_s():.1f} steps/s")
