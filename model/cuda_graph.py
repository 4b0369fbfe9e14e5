"""Batch-1 inference on a CUDA device replayed from a captured CUDA graph (`model.policy` picks it on CUDA).

At batch 1 the ACT forward is hundreds of small kernels, so launch overhead, not math, sets its latency. Capturing
the forward once into a `torch.cuda.CUDAGraph` with static input buffers and replaying it launches them all at once.
Issue 16's H100 numbers (paper config, 4 cameras 480x640, not measured here): eager fp32 5.5 ms, eager bf16 autocast
10.3 ms, CUDA graph fp32 2.6 ms, CUDA graph bf16 1.7 ms. So fp32 stays the default (eager bf16 is slower than
eager fp32 at batch 1); bf16 is an explicit choice.

    forward = graph_or_eager(InferenceForward(model), state_dim=14, cameras=3, image_size=(480, 640),
                             device=torch.device("cuda"), precision="fp32")
    a_hat = forward(qpos, images)   # (1, chunk, A) float32, like InferenceForward
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from typing import Callable, Literal

import torch

log = logging.getLogger(__name__)

Precision = Literal["fp32", "bf16"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16")
WARMUP_ITERS = 3  # on a side stream before capture: cuDNN/cuBLAS pick their algorithms and allocate workspaces

Forward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class AutocastForward(torch.nn.Module):
    """A forward under bf16 autocast (or none for fp32); the output is float32 either way."""

    def __init__(self, forward: torch.nn.Module, precision: Precision):
        super().__init__()
        self.forward_module = forward
        self.precision = precision

    def forward(self, qpos: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        # no cache of cast weights: a CUDA graph cannot capture one (torch.cuda.graph's documentation)
        with torch.autocast(device_type=qpos.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16",
                            cache_enabled=False):
            out = self.forward_module(qpos, images)
        return out.float()


class CudaGraphForward:
    """The forward captured once for fixed (1, J) and (1, N, 3, H, W) inputs; each call copies the inputs into the
    static buffers, replays the graph and returns a copy of the static output."""

    def __init__(self, forward: torch.nn.Module, state_dim: int, cameras: int, image_size: tuple[int, int],
                 device: torch.device, precision: Precision = "fp32"):
        if device.type != "cuda":
            raise ValueError(f"a CUDA graph needs a CUDA device, got {device}")
        self.forward = AutocastForward(forward, precision)
        self.static_qpos = torch.zeros(1, state_dim, device=device)
        self.static_images = torch.zeros(1, cameras, 3, *image_size, device=device)
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.inference_mode(), torch.cuda.stream(stream):
            for _ in range(WARMUP_ITERS):
                self.forward(self.static_qpos, self.static_images)
        torch.cuda.current_stream(device).wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.inference_mode():
            self.static_out = capture(lambda: self.forward(self.static_qpos, self.static_images),
                                      torch.cuda.graph(self.graph))

    def __call__(self, qpos: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        if qpos.shape != self.static_qpos.shape or images.shape != self.static_images.shape:
            raise ValueError(f"CUDA graph captured for qpos {tuple(self.static_qpos.shape)} and images "
                             f"{tuple(self.static_images.shape)}, got {tuple(qpos.shape)} and {tuple(images.shape)}")
        self.static_qpos.copy_(qpos)
        self.static_images.copy_(images)
        self.graph.replay()
        return self.static_out.clone()  # the next replay overwrites the static output


def capture(run: Callable[[], torch.Tensor], recording: AbstractContextManager) -> torch.Tensor:
    """`run()` inside `recording` (a `torch.cuda.graph`). Where `run` fails midway, its own exception is raised: the
    context's exit, ending a broken capture, may raise another error that would hide why capture failed."""
    failed: list[BaseException] = []
    try:
        with recording:
            try:
                return run()
            except BaseException as exc:
                failed.append(exc)
                raise
    except BaseException as exc:
        if failed and exc is not failed[0]:
            log.debug("ending the failed CUDA graph capture raised %s: %s", type(exc).__name__, exc)
            raise failed[0] from None
        raise


def graph_or_eager(forward: torch.nn.Module, state_dim: int, cameras: int, image_size: tuple[int, int],
                   device: torch.device, precision: Precision = "fp32") -> tuple[Forward, str]:
    """The captured graph, or the eager forward (logged) where capture fails. -> (forward, what runs: 'cuda-graph' or
    'eager')."""
    try:
        return CudaGraphForward(forward, state_dim, cameras, image_size, device, precision), "cuda-graph"
    except Exception as exc:  # an op that cannot be captured, out of memory, a driver without graphs: eager still works
        log.warning("CUDA graph capture failed (%s: %s); batch-1 inference runs eager", type(exc).__name__, exc)
        return AutocastForward(forward, precision).eval(), "eager"
