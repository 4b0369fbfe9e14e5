"""Asynchronous inference: the policy predicts in a worker thread while the 50 Hz loop takes one action per step.

Every observation handed to the worker is stamped with the step it was taken at, and the chunk predicted from it is
aligned to that step (`ChunkAligner`): a chunk that becomes available k steps later serves its k-th action first.
With temporal ensembling the action for a step averages every chunk covering it (the policy's exp(-k i) weights,
oldest first); without, the newest chunk alone serves. The loop never waits for the worker: when no chunk covers a
step the configured fallback is taken and counted: `hold` repeats the last action, `stop` also ends the episode
after that step. The worker always predicts from the newest observation (older unprocessed ones are dropped).

The first chunk of an episode is predicted before the loop starts (`start_episode`), so step 0 is always covered.
A policy on the CPU gets every core but one for the rollout's duration (`connect` to `disconnect`; torch's thread
count is process-wide, so it is restored after): the loop thread keeps a core to step and render on time.

`worker_nice` lowers the worker thread's own OS priority (Linux per-thread niceness, no privilege needed; it reaches
the threads the worker creates, not pools that exist already, such as ONNX Runtime's), so the loop wakes on time: on
the idle 2-core machine it took the loop's period p99 from 22.7-23.3 ms to 21.7-22.7 ms at 40-150 ms of inference
delay (bench/bench_realtime.py). It is off by default: on a loaded machine (beside three training processes) a niced
worker was preempted while holding the GIL, which stalled the loop (period p99 48-68 ms against 24-29 ms) and doubled
to tripled inference latency. (Handing the GIL over every 0.5 ms instead of 5 ms measured no different and was not
kept.)
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from hardware.interfaces import Observation, Robot, Teleoperator
from model.policy import TemporalEnsembler, ensemble, inference_threads

Fallback = Literal["hold", "stop"]
FALLBACKS: tuple[str, ...] = ("hold", "stop")


@dataclass(frozen=True)
class AsyncInference:
    """Run the policy beside the loop; `fallback` is what a step no chunk covers does."""

    fallback: Fallback = "hold"
    worker_nice: int = 0  # added to the worker thread's niceness (Linux; 0: unchanged); see the module docstring

    def __post_init__(self) -> None:
        if self.fallback not in FALLBACKS:
            raise ValueError(f"fallback: expected one of {list(FALLBACKS)}, got {self.fallback!r}")
        if not 0 <= self.worker_nice <= 19:
            raise ValueError(f"worker_nice: expected 0 to 19 (a lower priority than the loop), got {self.worker_nice}")


class ChunkAligner:
    """Chunks stamped with the step of their observation -> the action for a step, or None where none covers it."""

    def __init__(self, k: float | None):
        self.k = k  # None: no ensembling, the newest chunk serves alone
        self._chunks = TemporalEnsembler(0.0 if k is None else k)
        self.newest: int | None = None  # stamp of the newest chunk added

    def reset(self) -> None:
        self._chunks.reset()
        self.newest = None

    def add(self, obs_step: int, chunk: np.ndarray) -> None:
        if self.newest is not None and obs_step <= self.newest:
            raise ValueError(f"chunk for step {obs_step} arrived after one for step {self.newest}")
        self._chunks.push(obs_step, chunk)
        self.newest = obs_step

    def action(self, step: int) -> np.ndarray | None:
        preds = self._chunks.covering(step)
        if not preds:
            return None
        return preds[-1] if self.k is None else ensemble(preds, self.k)

    def age(self, step: int) -> int:
        """Steps between `step` and the observation of the newest chunk (the freshest one serving it)."""
        return step - (self.newest if self.newest is not None else step)


class AsyncPolicyTeleoperator(Teleoperator):
    """A `model.policy.Policy` (anything with `reset()` and `served_chunk(qpos, images)`) in a worker thread."""

    def __init__(self, policy: Any, options: AsyncInference = AsyncInference()):
        self.policy = policy
        self.options = options
        self.aligner = ChunkAligner(getattr(policy, "temporal_ensemble_k", None))
        self.latencies_s: list[float] = []  # every inference, in the worker
        self.ages: list[int] = []  # chunk age at use, one per covered step
        self.fallback_steps = 0  # steps of the current episode no chunk covered
        self._cv = threading.Condition()
        self._pending: tuple[int, Observation] | None = None
        self._done: list[tuple[int, np.ndarray]] = []
        self._error: BaseException | None = None
        self._closing = False
        self._busy = False
        self._thread: threading.Thread | None = None
        self._torch_threads: int | None = None  # the process's torch thread count while capped, to restore
        self.worker_niceness: int | None = None  # the worker's niceness as set (None: not changed or not possible)
        self._reset_episode()

    def connect(self) -> None:
        device = getattr(self.policy, "device", None)  # a remote policy's is "meta": nothing runs here
        if device is not None and torch.device(device).type == "cpu" and self._torch_threads is None:
            self._torch_threads = torch.get_num_threads()
            torch.set_num_threads(min(self._torch_threads, inference_threads()))

    def _reset_episode(self) -> None:
        self.t = 0
        self.last: np.ndarray | None = None
        self.fallback_steps = 0
        self.starved = False
        self._sent = -1

    def _predict(self, observation: Observation) -> np.ndarray:
        start = time.perf_counter()
        chunk = self.policy.served_chunk(observation.qpos, observation.images)
        self.latencies_s.append(time.perf_counter() - start)
        return np.asarray(chunk, dtype=np.float64)

    def start_episode(self, robot: Robot, seed: int | None = None) -> None:
        self._stop_worker()
        self.policy.reset()
        self.aligner.reset()
        self._reset_episode()
        self.aligner.add(0, self._predict(robot.observe()))  # before the clock starts: step 0 is covered
        self._sent = 0
        self._pending, self._done, self._error, self._closing = None, [], None, False
        self._thread = threading.Thread(target=self._work, name="policy-inference", daemon=True)
        self._thread.start()

    def _lower_worker_priority(self) -> None:
        """Called in the worker: raise its own niceness (Linux niceness is per thread; raising it is unprivileged)."""
        if not self.options.worker_nice or not hasattr(os, "setpriority") or sys.platform != "linux":
            return
        try:
            tid = threading.get_native_id()
            niceness = min(19, os.getpriority(os.PRIO_PROCESS, tid) + self.options.worker_nice)
            os.setpriority(os.PRIO_PROCESS, tid, niceness)
            self.worker_niceness = niceness
        except OSError:  # a sandbox refusing it: inference still runs, only the loop's wake-up is less punctual
            self.worker_niceness = None

    def _work(self) -> None:
        self._lower_worker_priority()
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._pending is not None or self._closing)
                if self._closing:
                    return
                step, observation = self._pending  # type: ignore[misc]
                self._pending, self._busy = None, True
            try:
                chunk = self._predict(observation)
            except BaseException as exc:  # handed to the loop, which raises it in its own thread
                with self._cv:
                    self._error, self._busy = exc, False
                    self._cv.notify_all()
                return
            with self._cv:
                self._done.append((step, chunk))
                self._busy = False
                self._cv.notify_all()

    def next_action(self, observation: Observation) -> np.ndarray:
        step = self.t
        with self._cv:
            if self._error is not None:
                raise self._error
            done, self._done = self._done, []
            if step > self._sent:  # the newest observation replaces one the worker has not started
                self._pending, self._sent = (step, observation), step
                self._cv.notify_all()
        for obs_step, chunk in done:
            self.aligner.add(obs_step, chunk)
        action = self.aligner.action(step)
        if action is None:
            self.fallback_steps += 1
            self.starved = self.options.fallback == "stop"
            action = self.last
        else:
            self.ages.append(self.aligner.age(step))
        self.last = action
        self.t += 1
        return np.asarray(action, dtype=np.float32)

    def wait_idle(self, timeout: float) -> bool:
        """Block until the worker has finished every observation handed to it (tests; never the loop)."""
        with self._cv:
            return self._cv.wait_for(lambda: (self._pending is None and not self._busy) or self._error is not None,
                                     timeout)

    def should_stop(self) -> bool:
        """True after a step no chunk covered under the `stop` fallback: the episode ends there."""
        return self.starved

    def _stop_worker(self) -> None:
        if self._thread is None:
            return
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        self._thread.join()
        self._thread = None

    def disconnect(self) -> None:
        try:
            self._stop_worker()
        finally:  # a second Ctrl-C while the worker finishes still gives the process its settings back
            if self._torch_threads is not None:
                torch.set_num_threads(self._torch_threads)
                self._torch_threads = None
