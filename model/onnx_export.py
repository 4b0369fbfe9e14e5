"""ONNX export of the policy's inference forward, and ONNX Runtime as an inference backend for it.

    forward = onnx_forward(policy.model, cameras=3, image_size=(480, 640))   # export + load; nothing left on disk
    a_hat = forward(qpos_normalized, images)                                  # (1, chunk, A), like ACT's first output

The bundle stays the source of truth: the graph is exported from the weights a verified bundle loaded, into a
temporary directory that is removed once ONNX Runtime has read it (never inside the bundle). The TorchScript-based
exporter is used (`dynamo=False`): the torch.export-based one needs `onnxscript`, which this project does not pin.
Inference is batch 1 at z = 0 (ACT's decoder without the CVAE encoder), on the CPU, with every core but one
(`inference_threads`): beside an asynchronous rollout the control loop keeps a core, and a session's thread count is
fixed when it is created.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from model.act import ACT

OPSET = 17
INPUTS = ("qpos", "images")  # normalized (1, J) float32; (1, N, 3, H, W) float32 in [0, 1]
OUTPUT = "actions"  # normalized (1, chunk, A)


def inference_threads() -> int:
    """Threads for CPU inference beside a control loop: every core but one, which the loop keeps."""
    return max(1, (os.cpu_count() or 1) - 1)


class InferenceForward(torch.nn.Module):
    """ACT's inference forward with only the action chunk as output (the graph that is exported)."""

    def __init__(self, model: ACT):
        super().__init__()
        self.model = model

    def forward(self, qpos: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        return self.model(qpos, images)[0]


def export_onnx(model: ACT, path: Path, cameras: int, image_size: tuple[int, int]) -> Path:
    """Write the batch-1 inference graph of `model` for `cameras` images of `image_size` (H, W) to `path`."""
    model = model.to("cpu").eval()
    q = torch.zeros(1, model.cfg.state_dim)
    imgs = torch.zeros(1, cameras, 3, *image_size)
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter's notice, see the module doc
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape checks frozen: the graph is batch-1, fixed size
        # eval() on the wrapper too: afterwards the exporter restores the wrapper's mode recursively, and a fresh
        # module is in training mode, which would switch the model's dropout on for PyTorch inference.
        torch.onnx.export(InferenceForward(model).eval(), (q, imgs), str(path), dynamo=False, opset_version=OPSET,
                          input_names=list(INPUTS), output_names=[OUTPUT])
    return Path(path)


class OnnxForward:
    """An ONNX Runtime session standing in for `ACT.forward(...)[0]` at inference."""

    def __init__(self, onnx_bytes: bytes, threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ImportError("the ONNX backend needs onnxruntime: pip install '.[onnx]'") from exc
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or inference_threads())
        self.session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])

    def __call__(self, qpos: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        feeds = {INPUTS[0]: qpos.detach().cpu().numpy().astype(np.float32),
                 INPUTS[1]: images.detach().cpu().numpy().astype(np.float32)}
        return torch.from_numpy(self.session.run([OUTPUT], feeds)[0])


def onnx_forward(model: ACT, cameras: int, image_size: tuple[int, int], threads: int | None = None) -> OnnxForward:
    """Export `model` to a temporary directory, load it into ONNX Runtime, and remove the directory."""
    with tempfile.TemporaryDirectory(prefix="aloha-onnx-") as tmp:
        path = export_onnx(model, Path(tmp) / "policy.onnx", cameras, image_size)
        return OnnxForward(path.read_bytes(), threads)
