"""Inference: a policy bundle -> one action per control step, in robot units.

    policy = Policy.from_bundle(dir)                      # verifies every sha256 first
    policy.check_compatible(robot_cameras, robot_joints)  # ValueError naming the mismatch
    policy.reset()                                        # at the start of every episode
    action = policy.act(qpos, {"top": frame, ...})        # frames at any resolution, resized here

Two ways to serve a chunk: open loop (query the model every `query_every` steps and play the chunk), or temporal
ensembling (query every step; the action for step t averages every chunk that predicted t with weights exp(-k*i),
i = 0 the OLDEST prediction, as in the ACT reference; k = 0.01 by default).

Inference backends: `torch` (the model itself) or `onnx` (the same weights exported to ONNX and run by ONNX Runtime on
the CPU, `model.onnx_export`; the bundle stays the source of truth). `predict_chunk` is the one forward either way;
the asynchronous rollout (`hardware.async_policy`) calls `served_chunk` for an observation taken at step t and aligns
the chunk to t itself.

On a CUDA device the `torch` backend replays a captured CUDA graph of the batch-1 forward by default (`model.cuda_graph`;
`cuda_graph=False` runs eager, a failed capture falls back to eager and logs it); `precision="bf16"` is an explicit
choice (bf16 autocast), fp32 the default. `inference_path` says what runs. The CPU runs the eager forward as before.

Mobile ALOHA: with `base_delay` d > 0 every served chunk takes its base columns d steps later than its arm columns
(`model.base_actions.delay_base_actions`; chunks become k - d long), in both ways of serving.
"""

from __future__ import annotations

import contextlib
import json
from collections import deque
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np
import torch
from safetensors.torch import load as load_safetensors

from assets_store.bundle import CONFIG, STATS, WEIGHTS, read_verified_bundle
from assets_store.errors import BundleIntegrityError
from assets_store.stats import stats_from_json
from model.act import ACT
from model.base_actions import base_columns, delay_base_actions
from model.config import ACTConfig
from model.cuda_graph import PRECISIONS, AutocastForward, Precision, graph_or_eager
from model.data import floored, resize_uint8
from model.onnx_export import InferenceForward, inference_threads, onnx_forward

# What the robot side (hardware/, which imports model.policy alone) needs of the inference backends.
__all__ = ["Policy", "TemporalEnsembler", "ensemble", "inference_threads", "PRECISIONS", "resize_uint8"]

BACKENDS = ("torch", "onnx")


def ensemble_weights(n: int, k: float) -> np.ndarray:
    """Normalized weights of n predictions ordered oldest first: exp(-k * i)."""
    w = np.exp(-k * np.arange(n, dtype=np.float64))
    return w / w.sum()


def ensemble(preds: list[np.ndarray], k: float) -> np.ndarray:
    """The weighted average of predictions for one step, oldest first (`ensemble_weights`)."""
    w = ensemble_weights(len(preds), k)
    return (w[:, None] * np.stack(preds)).sum(0)


class TemporalEnsembler:
    """Keeps the chunks still covering future steps; `push` a chunk predicted at step t, `pop` the action for t."""

    def __init__(self, k: float):
        self.k = float(k)
        self.chunks: deque[tuple[int, np.ndarray]] = deque()  # (step the chunk starts at, (chunk, A))

    def reset(self) -> None:
        self.chunks.clear()

    def push(self, step: int, chunk: np.ndarray) -> None:
        self.chunks.append((step, np.asarray(chunk, dtype=np.float64)))

    def covering(self, step: int) -> list[np.ndarray]:
        """Every prediction for `step`, oldest first: chunk started at s contributes its (step - s)-th action, so a
        chunk pushed k steps after its observation starts at its k-th action. Chunks that ended are dropped."""
        while self.chunks and self.chunks[0][0] + len(self.chunks[0][1]) <= step:
            self.chunks.popleft()  # no longer covers this step
        return [c[step - s] for s, c in self.chunks if s <= step < s + len(c)]

    def pop(self, step: int) -> np.ndarray:
        preds = self.covering(step)
        if not preds:
            raise RuntimeError(f"no prediction covers step {step}")
        return ensemble(preds, self.k)


@contextlib.contextmanager
def _bundle_file(bundle_dir: Path, name: str) -> Iterator[None]:
    """Any failure to make sense of one file of a verified bundle becomes one error that names the file."""
    try:
        yield
    except BundleIntegrityError:
        raise
    except Exception as exc:  # malformed JSON, wrong types, weights of another shape: never a traceback to a user
        raise BundleIntegrityError(f"{bundle_dir / name}: {type(exc).__name__}: {exc}") from None


class Policy:
    def __init__(self, model: ACT, config: dict, stats: dict, *, device: str = "cpu",
                 temporal_ensemble_k: float | None = 0.01, query_every: int = 1, base_delay: int = 0,
                 backend: str = "torch", cuda_graph: bool | None = None, precision: Precision = "fp32"):
        if backend not in BACKENDS:
            raise ValueError(f"backend: expected one of {list(BACKENDS)}, got {backend!r}")
        if backend == "onnx" and torch.device(device).type != "cpu":
            raise ValueError(f"backend 'onnx' runs on the CPU; got device {device!r}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision: expected one of {list(PRECISIONS)}, got {precision!r}")
        if backend == "onnx" and precision != "fp32":
            raise ValueError(f"backend 'onnx' runs fp32; got precision {precision!r}")
        if cuda_graph and torch.device(device).type != "cuda":
            raise ValueError(f"cuda_graph needs a CUDA device; got device {device!r}")
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.backend = backend
        self.config = config
        self.manifest: dict = {}  # the bundle's verified manifest (from_bundle)
        self.cfg: ACTConfig = model.cfg
        self.stats = {k: floored(v) for k, v in stats.items()}
        self.camera_names: list[str] = list(config["camera_names"])
        self.joint_names: list[str] = list(config["joint_names"])
        self.action_names: list[str] = list(config["action_names"])
        self.fps: float = float(config["fps"])
        self.image_size: tuple[int, int] = tuple(int(x) for x in config["image_size"])
        self.robot: str = str(config.get("robot", ""))  # "" / []: a bundle from before these were recorded
        self.tasks: list[str] = [str(t) for t in config.get("tasks", [])]
        self.chunk_size = self.cfg.chunk_size
        if temporal_ensemble_k is not None and temporal_ensemble_k < 0:
            temporal_ensemble_k = None  # negative k means "off" everywhere (CLI, run config): the one place it is read
        if temporal_ensemble_k is not None and query_every != 1:
            raise ValueError(
                f"temporal ensembling queries the model every step; got query_every={query_every}. "
                "Pass temporal_ensemble_k=None to execute chunks open loop every `query_every` steps."
            )
        if not 1 <= query_every <= self.chunk_size:
            raise ValueError(f"query_every must be in 1..chunk_size ({self.chunk_size}), got {query_every}")
        self.query_every = int(query_every)
        self.temporal_ensemble_k = temporal_ensemble_k
        self._ens = TemporalEnsembler(temporal_ensemble_k) if temporal_ensemble_k is not None else None
        self.base_delay = 0
        self.set_base_delay(base_delay)
        q, a = self.stats["qpos"], self.stats["action"]
        self._q_mean, self._q_std = (torch.tensor(x, dtype=torch.float32) for x in (q.mean, q.std))
        self._a_mean, self._a_std = a.mean.astype(np.float64), a.std.astype(np.float64)
        self.precision = precision
        self._forward, self.inference_path = self._make_forward(cuda_graph)
        self.reset()

    def _make_forward(self, cuda_graph: bool | None):
        """(1, J), (1, N, 3, H, W) -> (1, chunk, A) normalized actions, z = 0; and what runs, e.g. 'torch eager fp32'."""
        if self.backend == "onnx":
            return onnx_forward(self.model, len(self.camera_names), self.image_size), "onnx fp32"
        forward = InferenceForward(self.model).eval()
        if cuda_graph is None:
            cuda_graph = self.device.type == "cuda"  # the faster path where it exists; never on the CPU
        if cuda_graph:
            fast, path = graph_or_eager(forward, self.cfg.state_dim, len(self.camera_names), self.image_size,
                                        self.device, self.precision)
            return fast, f"torch {path} {self.precision}"
        if self.precision == "fp32":
            return forward, "torch eager fp32"  # the forward itself: the CPU path exactly as before
        return AutocastForward(forward, self.precision).eval(), f"torch eager {self.precision}"

    # ------------------------------------------------------------------ loading
    def set_base_delay(self, steps: int) -> None:
        """Base actions `steps` later in each chunk than arm actions (Mobile ALOHA recipe: 13); 0 = off. A policy
        without base columns ignores it."""
        steps = int(steps)
        if not base_columns(self.action_names):
            self.base_delay = 0
            return
        if not 0 <= steps < self.chunk_size:
            raise ValueError(f"base delay must be in 0..{self.chunk_size - 1} (chunk size {self.chunk_size}), got {steps}")
        if self._ens is None and self.query_every > self.chunk_size - steps:
            raise ValueError(f"query_every {self.query_every} exceeds the {self.chunk_size - steps} actions a chunk "
                             f"serves with a base delay of {steps}")
        self.base_delay = steps

    @classmethod
    def from_bundle(cls, bundle_dir: Path, device: str = "cpu", temporal_ensemble_k: float | None = 0.01,
                    query_every: int = 1, backend: str = "torch", cuda_graph: bool | None = None,
                    precision: Precision = "fp32") -> "Policy":
        """Load a bundle from the very bytes whose sha256 matched its manifest (always verified)."""
        bundle_dir = Path(bundle_dir)
        manifest, files = read_verified_bundle(bundle_dir)
        # Hashes that match say the files are the ones sealed, not that they are well-formed: each step names its file.
        with _bundle_file(bundle_dir, CONFIG):
            config = json.loads(files[CONFIG])
            if not isinstance(config, dict) or config.get("architecture") != "act":
                raise ValueError(f"architecture: expected 'act', got "
                                 f"{config.get('architecture') if isinstance(config, dict) else config!r}")
            for key in ("act", "camera_names", "joint_names", "action_names", "fps", "image_size"):
                if key not in config:
                    raise ValueError(f"{key}: expected a value, found none")
            model = ACT(ACTConfig(**config["act"]))
        with _bundle_file(bundle_dir, STATS):
            stats = stats_from_json(json.loads(files[STATS]))
        with _bundle_file(bundle_dir, WEIGHTS):
            model.load_state_dict(load_safetensors(files[WEIGHTS]), strict=True)
        policy = cls(model, config, stats, device=device, temporal_ensemble_k=temporal_ensemble_k,
                     query_every=query_every, backend=backend, cuda_graph=cuda_graph,
                     precision=precision)  # a ValueError here is the caller's arguments, not the bundle
        policy.manifest = manifest
        return policy

    # ------------------------------------------------------------------ checks
    def check_compatible(self, camera_names, joint_names) -> None:
        """The one policy/robot compatibility check (the policy knows what it was trained on); every rollout runs
        it before the robot connects (`hardware.rollout.run_rollouts`)."""
        problems = []
        missing = [c for c in self.camera_names if c not in set(camera_names)]
        if missing:
            problems.append(f"cameras {missing} required by the policy are missing (robot has {list(camera_names)})")
        if list(joint_names) != self.joint_names:
            problems.append(f"joint names differ: policy expects {self.joint_names}, robot has {list(joint_names)}")
        if problems:
            raise ValueError("policy is incompatible with this robot: " + "; ".join(problems))

    def trained_for_other(self, robot: str, task: str | None) -> str | None:
        """Why running on `robot` doing `task` is not what this policy was trained for, or None when it is (or the
        bundle does not say). Cameras and joints can match while the task differs: then the caller warns and asks
        for an explicit override instead of refusing outright."""
        if self.robot and robot != self.robot:
            return f"the policy was trained on robot {self.robot!r}, not {robot!r}"
        if self.tasks and task and task not in self.tasks:
            return f"the policy was trained for task(s) {self.tasks}, not {task!r}"
        return None

    # ------------------------------------------------------------------ serving
    def reset(self) -> None:
        self.t = 0
        self._chunk: np.ndarray | None = None
        if self._ens is not None:
            self._ens.reset()

    def _inputs(self, qpos: np.ndarray, images: Mapping[str, np.ndarray]):
        qpos = np.asarray(qpos, dtype=np.float32)
        if qpos.shape != (len(self.joint_names),):
            raise ValueError(f"qpos: expected shape ({len(self.joint_names)},), got {qpos.shape}")
        missing = [c for c in self.camera_names if c not in images]
        if missing:
            raise ValueError(f"images: missing cameras {missing}; got {sorted(images)}")
        q = (torch.from_numpy(qpos) - self._q_mean) / self._q_std
        imgs = torch.stack([resize_uint8(np.asarray(images[c], dtype=np.uint8), self.image_size) for c in self.camera_names])
        return q[None].to(self.device), imgs[None].to(self.device).float().div_(255.0)

    @torch.inference_mode()
    def predict_chunk(self, qpos: np.ndarray, images: Mapping[str, np.ndarray]) -> np.ndarray:
        """(chunk, A) actions in robot units for the current observation (z = 0)."""
        q, imgs = self._inputs(qpos, images)
        a_hat = self._forward(q, imgs)
        return a_hat[0].double().cpu().numpy() * self._a_std + self._a_mean

    def served_chunk(self, qpos: np.ndarray, images: Mapping[str, np.ndarray]) -> np.ndarray:
        """The chunk actions are served from: predicted, base columns delayed by `base_delay`."""
        return delay_base_actions(self.predict_chunk(qpos, images), self.action_names, self.base_delay)

    def act(self, qpos: np.ndarray, images: Mapping[str, np.ndarray]) -> np.ndarray:
        t = self.t
        if self._ens is not None:
            self._ens.push(t, self.served_chunk(qpos, images))
            action = self._ens.pop(t)
        else:
            if t % self.query_every == 0:
                self._chunk = self.served_chunk(qpos, images)
            action = self._chunk[t % self.query_every]
        self.t += 1
        return action.astype(np.float32)

    # ------------------------------------------------------------------ evaluation
    @torch.inference_mode()
    def evaluate_loss(self, qpos: np.ndarray, images: Mapping[str, np.ndarray], actions: np.ndarray,
                      is_pad: np.ndarray | None = None) -> float:
        """L1 (normalized units, z = 0) of the chunk predicted for one observation against the recorded actions."""
        chunk = np.asarray(actions, dtype=np.float64)[: self.chunk_size]
        pred = (self.predict_chunk(qpos, images)[: len(chunk)] - self._a_mean) / self._a_std
        target = (chunk - self._a_mean) / self._a_std
        valid = np.ones(len(chunk), bool) if is_pad is None else ~np.asarray(is_pad, bool)[: len(chunk)]
        return float(np.abs(pred - target)[valid].mean()) if valid.any() else 0.0
