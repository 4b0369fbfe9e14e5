"""Importing original-ACT and LeRobot-ACT checkpoints: same actions as the source architecture (z = 0).

The reference forward below is written from the source layouts' semantics with functional torch ops, against the
raw key names, independent of model/act.py. State dicts are random tensors in those layouts.
"""

from __future__ import annotations

import io
import math
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torchvision.ops.misc import FrozenBatchNorm2d

from assets_store.bundle import verify_bundle
from model.act import ACT
from model.checkpoints_import import import_lerobot, import_original, load_stats_pickle, to_bundle
from model.policy import Policy

from model_kit import tiny_act

D, HEADS, K, J, A = 32, 2, 5, 3, 4
CAMS = ["top", "left"]


# ----------------------------------------------------------------------------- reference forward (seq-first)
def _ln(x, sd, p):
    return F.layer_norm(x, (x.shape[-1],), sd[p + ".weight"], sd[p + ".bias"])


def _lin(x, sd, p):
    return F.linear(x, sd[p + ".weight"], sd[p + ".bias"])


def _mha(q, k, v, sd, p):
    return F.multi_head_attention_forward(
        q, k, v, D, HEADS, sd[p + ".in_proj_weight"], sd[p + ".in_proj_bias"], None, None, False, 0.0,
        sd[p + ".out_proj.weight"], sd[p + ".out_proj.bias"], training=False, need_weights=False)[0]


def _enc(x, pos, sd, p):
    q = x + pos
    x = _ln(x + _mha(q, q, x, sd, p + ".self_attn"), sd, p + ".norm1")
    return _ln(x + _lin(F.relu(_lin(x, sd, p + ".linear1")), sd, p + ".linear2"), sd, p + ".norm2")


def _dec(t, mem, pos, qpos, sd, p):
    q = t + qpos
    t = _ln(t + _mha(q, q, t, sd, p + ".self_attn"), sd, p + ".norm1")
    t = _ln(t + _mha(t + qpos, mem + pos, mem, sd, p + ".multihead_attn"), sd, p + ".norm2")
    return _ln(t + _lin(F.relu(_lin(t, sd, p + ".linear1")), sd, p + ".linear2"), sd, p + ".norm3")


def _sine(h, w):  # DETR-style normalized sine embedding built from a mask cumsum
    ones = torch.ones(1, h, w)
    y, x = ones.cumsum(1), ones.cumsum(2)
    y = y / (y[:, -1:, :] + 1e-6) * 2 * math.pi
    x = x / (x[:, :, -1:] + 1e-6) * 2 * math.pi
    n = D // 2
    dim_t = 10000 ** (2 * torch.div(torch.arange(n), 2, rounding_mode="floor") / n)
    px, py = x[..., None] / dim_t, y[..., None] / dim_t
    px = torch.stack((px[..., 0::2].sin(), px[..., 1::2].cos()), dim=4).flatten(3)
    py = torch.stack((py[..., 0::2].sin(), py[..., 1::2].cos()), dim=4).flatten(3)
    return torch.cat((py, px), dim=3).permute(0, 3, 1, 2)  # (1, D, h, w)


def reference(sd, names, qpos, images, *, first_decoder_only, per_camera_tokens):
    net = torchvision.models.resnet18(weights=None, norm_layer=FrozenBatchNorm2d)
    bb = {k[len(names["backbone"]):]: v for k, v in sd.items() if k.startswith(names["backbone"])}
    net.load_state_dict(bb, strict=False)
    B = qpos.shape[0]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    feats, poss = [], []
    for c in range(images.shape[1]):
        x = (images[:, c] - mean) / std
        x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        x = net.layer4(net.layer3(net.layer2(net.layer1(x))))
        feats.append(F.conv2d(x, sd[names["input_proj"] + ".weight"], sd[names["input_proj"] + ".bias"]))
        poss.append(_sine(*x.shape[2:]))
    if per_camera_tokens:  # LeRobot: camera after camera
        src = torch.cat([f.flatten(2).permute(2, 0, 1) for f in feats])
        pos = torch.cat([p.flatten(2).permute(2, 0, 1) for p in poss]).repeat(1, B, 1)
    else:  # original: joined along width, then flattened
        src = torch.cat(feats, dim=3).flatten(2).permute(2, 0, 1)
        pos = torch.cat(poss, dim=3).flatten(2).permute(2, 0, 1).repeat(1, B, 1)
    latent = _lin(torch.zeros(B, sd[names["latent_out"] + ".weight"].shape[1]), sd, names["latent_out"])
    proprio = _lin(qpos, sd, names["robot"])
    src = torch.cat([torch.stack([latent, proprio]), src])
    pos = torch.cat([sd[names["extra_pos"] + ".weight"][:, None].repeat(1, B, 1), pos])
    i = 0
    while f"{names['enc']}.{i}.linear1.weight" in sd:
        src = _enc(src, pos, sd, f"{names['enc']}.{i}")
        i += 1
    qpos_emb = sd[names["query"] + ".weight"][:, None].repeat(1, B, 1)
    t, outs, i = torch.zeros_like(qpos_emb), [], 0
    while f"{names['dec']}.{i}.linear1.weight" in sd:
        t = _dec(t, src, pos, qpos_emb, sd, f"{names['dec']}.{i}")
        outs.append(_ln(t, sd, names["dec_norm"]))
        i += 1
    hs = outs[0] if first_decoder_only else outs[-1]
    return _lin(hs, sd, names["head"]).transpose(0, 1)  # (B, K, A)


ORIGINAL = dict(backbone="model.backbones.0.0.body.", input_proj="model.input_proj", latent_out="model.latent_out_proj",
                robot="model.input_proj_robot_state", extra_pos="model.additional_pos_embed", enc="model.transformer.encoder.layers",
                query="model.query_embed", dec="model.transformer.decoder.layers", dec_norm="model.transformer.decoder.norm",
                head="model.action_head")
LEROBOT = dict(backbone="model.backbone.", input_proj="model.encoder_img_feat_input_proj", latent_out="model.encoder_latent_input_proj",
               robot="model.encoder_robot_state_input_proj", extra_pos="model.encoder_1d_feature_pos_embed",
               enc="model.encoder.layers", query="model.decoder_pos_embed", dec="model.decoder.layers",
               dec_norm="model.decoder.norm", head="model.action_head")


def _random_layout(table: dict[str, str], dec_layers: int, extra: dict[str, tuple]) -> dict[str, torch.Tensor]:
    """Random weights with the shapes of a tiny ACT, under the source layout's key names."""
    torch.manual_seed(1)
    ours = ACT(tiny_act(hidden_dim=D, nheads=HEADS, chunk_size=K, dec_layers=dec_layers, enc_layers=2, vae_enc_layers=2,
                        backbone_norm="frozen_bn", camera_names=CAMS)).state_dict()
    out = {}
    for key, v in ours.items():
        for src, dst in table.items():
            if key == dst or key.startswith(dst + "."):
                new = src + key[len(dst):]
                break
        else:
            raise AssertionError(f"no layout name for {key}")
        v = v.clone().float()
        v = v.abs() + 0.5 if key.endswith("running_var") else v + 0.05 * torch.randn_like(v)
        out[new] = v
    for k, shape in extra.items():
        out[k] = torch.randn(shape)
    return out


def _inputs():
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, J, generator=g), torch.rand(2, len(CAMS), 3, 64, 96, generator=g)


def test_original_checkpoint_matches_original_architecture(tmp_path):
    table = {"model.backbones.0.0.body": "backbone", "model.input_proj_robot_state": "qpos_proj", "model.input_proj": "input_proj",
             "model.latent_out_proj": "latent_out_proj", "model.additional_pos_embed": "extra_pos", "model.query_embed": "query_embed",
             "model.action_head": "action_head", "model.cls_embed": "cls_embed", "model.encoder_action_proj": "vae_action_proj",
             "model.encoder_joint_proj": "vae_qpos_proj", "model.latent_proj": "latent_proj", "model.encoder.layers": "vae_layers",
             "model.transformer.encoder.layers": "enc_layers", "model.transformer.decoder.layers": "dec_layers",
             "model.transformer.decoder.norm": "dec_norm"}
    sd = _random_layout(table, dec_layers=7, extra={"model.is_pad_head.weight": (1, D), "model.is_pad_head.bias": (1,),
                                                    "model.pos_table": (1, 2 + K, D)})
    stats = {"qpos_mean": np.arange(J, dtype=np.float32), "qpos_std": np.full(J, 2.0, np.float32),
             "action_mean": np.arange(A, dtype=np.float32) - 1, "action_std": np.full(A, 3.0, np.float32),
             "example_qpos": np.zeros((5, J), np.float32)}
    (tmp_path / "dataset_stats.pkl").write_bytes(pickle.dumps(stats))
    torch.save(sd, tmp_path / "policy_best.ckpt")

    model, norm = import_original(tmp_path / "policy_best.ckpt", tmp_path / "dataset_stats.pkl", CAMS, nheads=HEADS)
    assert model.cfg.dec_layers == 1 and model.cfg.chunk_size == K and model.cfg.action_dim == A
    qpos, images = _inputs()
    with torch.no_grad():
        want = reference(sd, ORIGINAL, qpos, images, first_decoder_only=True, per_camera_tokens=False)
        got = model(qpos, images)[0]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    # and through a bundle + Policy, in robot units
    bundle = to_bundle(model, norm, tmp_path / "bundle", joint_names=["a", "b", "c"], action_names=list("wxyz"),
                       fps=50.0, image_size=(64, 96), source="original")
    # the one bundle writer: sealed, and built beside its final name then renamed (no temporary left behind)
    assert verify_bundle(bundle)["imported_from"] == "original"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    pol = Policy.from_bundle(bundle, temporal_ensemble_k=None)
    raw_q = qpos[0].numpy() * 2.0 + np.arange(J)
    frames = {c: (images[0, i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for i, c in enumerate(CAMS)}
    with torch.no_grad():  # the policy sees uint8-quantized frames
        im8 = torch.stack([torch.tensor(frames[c]).permute(2, 0, 1).float() / 255 for c in CAMS])[None]
        want8 = reference(sd, ORIGINAL, torch.tensor((raw_q - np.arange(J)) / 2.0, dtype=torch.float32)[None], im8,
                          first_decoder_only=True, per_camera_tokens=False)[0].numpy() * 3.0 + (np.arange(A) - 1)
    np.testing.assert_allclose(pol.act(raw_q, frames), want8[0], rtol=1e-4, atol=1e-4)


def test_lerobot_checkpoint_matches_lerobot_architecture(tmp_path):
    from safetensors.torch import save_file

    table = {"model.backbone": "backbone", "model.encoder_img_feat_input_proj": "input_proj",
             "model.encoder_robot_state_input_proj": "qpos_proj", "model.encoder_latent_input_proj": "latent_out_proj",
             "model.encoder_1d_feature_pos_embed": "extra_pos", "model.decoder_pos_embed": "query_embed",
             "model.action_head": "action_head", "model.vae_encoder_cls_embed": "cls_embed",
             "model.vae_encoder_robot_state_input_proj": "vae_qpos_proj", "model.vae_encoder_action_input_proj": "vae_action_proj",
             "model.vae_encoder_latent_output_proj": "latent_proj", "model.vae_encoder.layers": "vae_layers",
             "model.encoder.layers": "enc_layers", "model.decoder.layers": "dec_layers", "model.decoder.norm": "dec_norm"}
    sd = _random_layout(table, dec_layers=2, extra={"model.vae_encoder_pos_enc": (1, 2 + K, D)})
    sd["normalize_inputs.buffer_observation_state.mean"] = torch.zeros(J)
    sd["normalize_inputs.buffer_observation_state.std"] = torch.ones(J)
    sd["normalize_inputs.buffer_observation_images_top.mean"] = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    sd["normalize_targets.buffer_action.mean"] = torch.zeros(A)
    sd["normalize_targets.buffer_action.std"] = torch.ones(A)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "model.safetensors"))
    config = {"type": "act", "n_heads": HEADS, "dim_model": D, "chunk_size": K, "pre_norm": False, "n_decoder_layers": 2,
              "input_features": {"observation.images.top": {"type": "VISUAL", "shape": [3, 64, 96]},
                                 "observation.images.left": {"type": "VISUAL", "shape": [3, 64, 96]},
                                 "observation.state": {"type": "STATE", "shape": [J]}},
              "output_features": {"action": {"type": "ACTION", "shape": [A]}}}
    import json

    (tmp_path / "config.json").write_text(json.dumps(config))
    model, norm = import_lerobot(tmp_path)
    assert model.cfg.camera_names == ["top", "left"] and model.cfg.dec_layers == 2
    qpos, images = _inputs()
    with torch.no_grad():
        want = reference(sd, LEROBOT, qpos, images, first_decoder_only=False, per_camera_tokens=True)
        got = model(qpos, images)[0]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert norm["action"].std.tolist() == [1.0] * A


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_stats_pickle_is_restricted():
    good = {"qpos_mean": np.zeros(3), "qpos_std": np.ones(3, np.float32), "n": 3, "x": np.float64(1.5)}
    out = load_stats_pickle(pickle.dumps(good))
    assert out["qpos_std"].dtype == np.float32 and out["x"] == 1.5
    out2 = load_stats_pickle(pickle.dumps(good, protocol=2))
    assert np.array_equal(out2["qpos_mean"], good["qpos_mean"])
    with pytest.raises(pickle.UnpicklingError):
        load_stats_pickle(pickle.dumps({"a": _Evil()}))
    with pytest.raises(pickle.UnpicklingError):
        load_stats_pickle(pickle.dumps({"a": io.BytesIO(b"")}))
