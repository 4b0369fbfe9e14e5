"""The fast inference and training paths: CUDA graphs for batch-1 inference (picked on CUDA only, fp32 by default),
explicit bf16, and the opt-in compiled training step.

On a machine without CUDA the graph tests are skipped and the CPU tests check that nothing changes there. Compiling a
training step takes minutes on a CPU (138 s for the tiny model on 2 cores), so the test that really compiles runs only
with ALOHA_TEST_COMPILE=1; the plumbing is tested with Dynamo switched off.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import torch

from bundle_kit import policy_inputs as _inputs, tiny_sim_bundle
from model.checkpoint import load_checkpoint
from model.config import TrainConfig
from model.cuda_graph import capture, graph_or_eager
from model.onnx_export import InferenceForward
from model.policy import Policy
from model.train import train
from model_kit import tiny_act, tiny_train

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_sim_bundle(tmp_path_factory.mktemp("bundle") / "b", ["top", "left_wrist"])


# ----------------------------------------------------------------------------- inference: selection on the CPU
def test_cpu_default_is_the_eager_forward_unchanged(bundle):
    policy = Policy.from_bundle(bundle)
    assert policy.inference_path == "torch eager fp32" and policy.precision == "fp32"
    assert isinstance(policy._forward, InferenceForward)  # the very module the CPU ran before
    qpos, images = _inputs(0, policy.camera_names)
    q, imgs = policy._inputs(qpos, images)
    with torch.inference_mode():
        expected = policy.model(q, imgs)[0][0].double().numpy() * policy._a_std + policy._a_mean
    np.testing.assert_array_equal(policy.predict_chunk(qpos, images), expected)


def test_cuda_graph_and_precision_are_checked(bundle):
    with pytest.raises(ValueError, match="cuda_graph needs a CUDA device; got device 'cpu'"):
        Policy.from_bundle(bundle, cuda_graph=True)
    with pytest.raises(ValueError, match=r"precision: expected one of \['fp32', 'bf16'\], got 'fp16'"):
        Policy.from_bundle(bundle, precision="fp16")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="backend 'onnx' runs fp32; got precision 'bf16'"):
        Policy.from_bundle(bundle, backend="onnx", precision="bf16")
    assert Policy.from_bundle(bundle, cuda_graph=False).inference_path == "torch eager fp32"


def test_explicit_bf16_runs_under_autocast_close_to_fp32(bundle):
    fp32 = Policy.from_bundle(bundle)
    bf16 = Policy.from_bundle(bundle, precision="bf16")
    assert bf16.inference_path == "torch eager bf16"
    qpos, images = _inputs(1, fp32.camera_names)
    a, b = fp32.predict_chunk(qpos, images), bf16.predict_chunk(qpos, images)
    assert b.dtype == np.float64 and b.shape == a.shape
    assert not np.array_equal(a, b)  # really ran in bf16
    np.testing.assert_allclose(b, a, atol=0.1 * np.abs(a).max(), rtol=0)


def test_failed_capture_falls_back_to_eager_and_logs_it(bundle, caplog):
    policy = Policy.from_bundle(bundle)
    q, imgs = policy._inputs(*_inputs(2, policy.camera_names))
    with caplog.at_level(logging.WARNING, logger="model.cuda_graph"):
        forward, path = graph_or_eager(InferenceForward(policy.model).eval(), 14, 2, policy.image_size,
                                       torch.device("cpu"))
    assert path == "eager"
    assert "CUDA graph capture failed (ValueError: a CUDA graph needs a CUDA device, got cpu)" in caplog.text
    with torch.inference_mode():
        torch.testing.assert_close(forward(q, imgs), policy.model(q, imgs)[0], rtol=0, atol=0)


class EndsBadly:
    """A capture context whose exit raises its own error, as torch.cuda.graph's does after a forward failed in it."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        raise RuntimeError("operation not permitted when stream is capturing")


def test_a_failed_capture_raises_the_forward_s_own_error():
    def forward():
        raise ValueError("boom in the forward")

    with pytest.raises(ValueError, match="boom in the forward"):
        capture(forward, EndsBadly())
    with pytest.raises(RuntimeError, match="when stream is capturing"):  # a failure of the exit alone is its own
        capture(lambda: torch.zeros(1), EndsBadly())


# ----------------------------------------------------------------------------- inference: CUDA
@needs_cuda
def test_a_forward_failing_during_capture_falls_back_to_eager_and_logs_its_error(bundle, caplog, monkeypatch):
    from model.act import ACT

    forward = ACT.forward

    def fails_while_capturing(self, *args, **kwargs):
        if torch.cuda.is_current_stream_capturing():
            raise RuntimeError("boom during capture")
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(ACT, "forward", fails_while_capturing)
    with caplog.at_level(logging.WARNING, logger="model.cuda_graph"):
        policy = Policy.from_bundle(bundle, device="cuda")
    assert policy.inference_path == "torch eager fp32"
    assert "CUDA graph capture failed (RuntimeError: boom during capture)" in caplog.text
    qpos, images = _inputs(0, policy.camera_names)
    assert np.isfinite(policy.predict_chunk(qpos, images)).all()  # eager outside capture still works


@needs_cuda
def test_cuda_default_is_the_graph_and_matches_eager(bundle):
    graph = Policy.from_bundle(bundle, device="cuda")
    eager = Policy.from_bundle(bundle, device="cuda", cuda_graph=False)
    assert graph.inference_path == "torch cuda-graph fp32" and eager.inference_path == "torch eager fp32"
    outs = []
    for seed in range(3):  # new inputs each replay: the static buffers really are refilled
        qpos, images = _inputs(seed, graph.camera_names)
        got, expected = graph.predict_chunk(qpos, images), eager.predict_chunk(qpos, images)
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
        outs.append(got)
    assert not np.allclose(outs[0], outs[1])
    qpos, images = _inputs(0, graph.camera_names)
    for _ in range(3):  # temporal ensembling through the graph, step by step
        np.testing.assert_allclose(graph.act(qpos, images), eager.act(qpos, images), atol=1e-4, rtol=0)


@needs_cuda
def test_cuda_graph_bf16_is_explicit_and_close(bundle):
    fp32 = Policy.from_bundle(bundle, device="cuda", cuda_graph=False)
    bf16 = Policy.from_bundle(bundle, device="cuda", precision="bf16")
    assert bf16.inference_path == "torch cuda-graph bf16"
    qpos, images = _inputs(3, fp32.camera_names)
    a = fp32.predict_chunk(qpos, images)
    np.testing.assert_allclose(bf16.predict_chunk(qpos, images), a, atol=0.1 * np.abs(a).max(), rtol=0)


# ----------------------------------------------------------------------------- training: the compiled step
def test_compile_is_opt_in():
    assert TrainConfig().compile is False
    assert "steps/s" in TrainConfig.model_fields["compile"].description  # says when it pays


def test_compile_plumbing_trains_the_model_that_is_checkpointed(tiny_dataset, tmp_path):
    """With Dynamo switched off the compiled wrapper runs eager: the same steps, on the very parameters that are
    checkpointed, and the checkpoint records compile=True (what the run asked torch for)."""
    cfg = dict(steps=4, val_every=100, checkpoint_every=100)
    plain = train(tiny_dataset, tmp_path / "plain", tiny_act(), tiny_train(**cfg))
    with torch._dynamo.config.patch(disable=True):
        compiled = train(tiny_dataset, tmp_path / "compiled", tiny_act(), tiny_train(compile=True, **cfg))
    a, b = load_checkpoint(plain.last_checkpoint), load_checkpoint(compiled.last_checkpoint)
    assert a["train_config"]["compile"] is False and b["train_config"]["compile"] is True
    assert compiled.final_train_loss == pytest.approx(plain.final_train_loss, abs=1e-6)
    for name, w in a["model"].items():
        torch.testing.assert_close(b["model"][name], w, rtol=0, atol=1e-6)


@pytest.mark.skipif(os.environ.get("ALOHA_TEST_COMPILE") != "1",
                    reason="compiling takes minutes on a CPU; set ALOHA_TEST_COMPILE=1 to run it")
def test_compiled_step_trains_like_eager(tiny_dataset, tmp_path):
    cfg = dict(steps=6, val_every=100, checkpoint_every=100)
    plain = train(tiny_dataset, tmp_path / "plain", tiny_act(), tiny_train(**cfg))
    compiled = train(tiny_dataset, tmp_path / "compiled", tiny_act(), tiny_train(compile=True, **cfg))
    # inductor draws the CVAE noise from its own generator: the same training, not the same bits
    assert compiled.final_train_loss == pytest.approx(plain.final_train_loss, rel=0.05)
