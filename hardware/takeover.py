"""Human takeover (HG-DAgger): a person takes the robot from the policy mid-rollout and hands it back.

`SharedControl` is the teleoperator the rollout loop drives with: the policy's actions, or, after a takeover (the
human device's gesture, or the key `t` in the terminal), the human's. Both switches are bumpless: the followers are
ramped from the last executed action to the human's pose over `ramp_steps` steps, and the policy starts afresh (its
chunks and temporal ensembler reset) when it gets control back, so no stale chunk is blended with the new state.
The steps the human drove (ramp excluded) are the episode's takeover spans, `[start, stop)` step indices.
"""

from __future__ import annotations

from typing import Callable, Protocol

import numpy as np

from hardware.interfaces import Observation, Robot, Teleoperator

TAKEOVER_KEY = "t"


class HumanControl(Protocol):
    """A human's device beside the policy (the ALOHA leader arms: `hardware.aloha.takeover.LeaderTakeover`)."""

    ramp_steps: int  # steps to blend from the policy's last action to the human's pose

    def connect(self) -> None: ...

    def disconnect(self) -> None: ...

    def sense(self) -> bool:
        """Read the device for this step; True when the operator's gesture asks to switch who drives."""
        ...

    def action(self) -> np.ndarray:
        """The human's command for this step, from the reading `sense` took."""
        ...


class SharedControl(Teleoperator):
    """The policy's teleoperator, or the human's device while a takeover lasts."""

    def __init__(self, policy: Teleoperator, human: HumanControl, keys: Callable[[], str] | None = None):
        self.policy = policy
        self.human = human
        self.keys = keys  # typed keys since the last call ('' when none); `t` switches
        self._robot: Robot | None = None
        self._seed: int | None = None
        self._start_episode_state()

    def _start_episode_state(self) -> None:
        self.t = 0
        self.human_driving = False
        self.takeovers = 0
        self._spans: list[list[int]] = []
        self._span_start: int | None = None
        self._ramp: tuple[np.ndarray, int] | None = None  # (action the ramp starts from, steps done)
        self._last: np.ndarray | None = None

    def connect(self) -> None:
        self.policy.connect()
        self.human.connect()

    def disconnect(self) -> None:
        try:
            self.policy.disconnect()
        finally:
            self.human.disconnect()

    def start_episode(self, robot: Robot, seed: int | None = None) -> None:
        self._robot, self._seed = robot, seed
        self._start_episode_state()
        self.policy.start_episode(robot, seed)

    def spans(self) -> list[list[int]]:
        """The steps the human drove so far, a span still open ending at the current step."""
        open_span = [] if self._span_start is None else [[self._span_start, self.t]]
        return [list(s) for s in self._spans] + open_span

    def _switch(self, observation: Observation) -> None:
        if not self.human_driving:
            self.human_driving, self.takeovers = True, self.takeovers + 1
            start = self._last if self._last is not None else np.asarray(observation.qpos, dtype=np.float64)
            self._ramp = (np.asarray(start, dtype=np.float64), 0)
            return
        self.human_driving, self._ramp = False, None
        if self._span_start is not None:
            self._spans.append([self._span_start, self.t])
            self._span_start = None
        # The policy starts afresh from the state the human left: no chunk predicted before the takeover survives.
        self.policy.start_episode(self._robot, self._seed)  # type: ignore[arg-type]

    def next_action(self, observation: Observation) -> np.ndarray:
        toggle = self.human.sense()
        if self.keys is not None and TAKEOVER_KEY in self.keys():
            toggle = not toggle  # a gesture and a key in the same step cancel out
        if toggle:
            self._switch(observation)
        if self.human_driving:
            action = np.asarray(self.human.action(), dtype=np.float64)
            if self._ramp is not None:
                start, done = self._ramp
                n = max(0, int(self.human.ramp_steps))
                if done < n and start.shape == action.shape:
                    done += 1
                    action = start + (action - start) * (done / n)
                    self._ramp = (start, done)
                else:
                    self._ramp = None
            if self._ramp is None and self._span_start is None:
                self._span_start = self.t
        else:
            action = np.asarray(self.policy.next_action(observation), dtype=np.float64)
        self._last = action
        self.t += 1
        return action.astype(np.float32)
