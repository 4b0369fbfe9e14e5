"""ONNX Runtime as the policy's inference backend: the same chunks as PyTorch, exported from the verified bundle."""

from __future__ import annotations

import numpy as np
import pytest

from bundle_kit import POLICY_HW, policy_inputs as _inputs, tiny_sim_bundle
from model.policy import Policy

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_sim_bundle(tmp_path_factory.mktemp("bundle") / "b", ["top", "left_wrist"])


def test_onnx_runtime_matches_pytorch_within_1e_4(bundle):
    before = sorted(p.name for p in bundle.iterdir())
    torch_policy = Policy.from_bundle(bundle, temporal_ensemble_k=0.01)
    onnx_policy = Policy.from_bundle(bundle, temporal_ensemble_k=0.01, backend="onnx")
    assert onnx_policy.backend == "onnx" and tuple(onnx_policy.image_size) == POLICY_HW
    for seed in range(3):
        qpos, images = _inputs(seed, torch_policy.camera_names)
        expected = torch_policy.predict_chunk(qpos, images)
        got = onnx_policy.predict_chunk(qpos, images)
        assert got.shape == expected.shape == (10, 14)
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    # Served through temporal ensembling too, step by step.
    for seed in range(3):
        qpos, images = _inputs(seed, torch_policy.camera_names)
        np.testing.assert_allclose(onnx_policy.act(qpos, images), torch_policy.act(qpos, images), atol=1e-4, rtol=0)
    assert sorted(p.name for p in bundle.iterdir()) == before  # nothing written inside the bundle


def test_unknown_backend_and_onnx_off_the_cpu_are_refused(bundle):
    with pytest.raises(ValueError, match=r"backend: expected one of \['torch', 'onnx'\], got 'tensorrt'"):
        Policy.from_bundle(bundle, backend="tensorrt")
    with pytest.raises(ValueError, match="backend 'onnx' runs on the CPU"):
        Policy.from_bundle(bundle, device="meta", backend="onnx")


def test_export_leaves_the_model_in_eval_mode():
    import torch

    from model.act import ACT
    from model.config import ACTConfig
    from model.onnx_export import InferenceForward, onnx_forward

    torch.manual_seed(0)  # dropout 0.1: a model left in training mode by the export would differ by O(1)
    cfg = ACTConfig(hidden_dim=32, dim_feedforward=64, nheads=2, enc_layers=2, vae_enc_layers=1, dec_layers=1,
                    chunk_size=10, dropout=0.1, pretrained_backbone=False, backbone_norm="group", state_dim=14,
                    action_dim=14, camera_names=["top"])
    model = ACT(cfg).eval()
    q, imgs = torch.randn(1, 14), torch.rand(1, 1, 3, *POLICY_HW)
    forward = onnx_forward(model, cameras=1, image_size=POLICY_HW)
    assert not model.training  # the exporter restores the mode it found: the model is still in eval mode
    with torch.inference_mode():
        expected = InferenceForward(model).eval()(q, imgs)
    got = forward(q, imgs)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-4, rtol=0)
