"""Import checkpoints of the original ACT code and of LeRobot's ACT into this model (and from there into a bundle).

Original ACT (`policy_best.ckpt` = torch.save(policy.state_dict()) + `dataset_stats.pkl`):
    keys under "model.": backbones.0.0.body.* (ResNet18, frozen BN), input_proj, input_proj_robot_state,
    latent_out_proj, additional_pos_embed, query_embed, action_head, is_pad_head (unused), cls_embed,
    encoder_action_proj, encoder_joint_proj, latent_proj, pos_table (fixed), encoder.layers.* (CVAE encoder),
    transformer.encoder.layers.*, transformer.decoder.layers.*, transformer.decoder.norm.
    Only decoder layer 0 (+ the final norm) is imported: the original returns that layer's output (see
    model/config.py), so the 1-layer import computes exactly the original's actions.
    The stats pickle (qpos_mean/std, action_mean/std as numpy arrays) is read by a restricted unpickler that can
    build numpy arrays, dtypes and scalars inside plain dicts, and nothing else.

LeRobot ACT (`model.safetensors` + `config.json`):
    keys under "model.": backbone.*, encoder_img_feat_input_proj, encoder_robot_state_input_proj,
    encoder_latent_input_proj, encoder_1d_feature_pos_embed, decoder_pos_embed, action_head, vae_encoder_cls_embed,
    vae_encoder_robot_state_input_proj, vae_encoder_action_input_proj, vae_encoder_latent_output_proj,
    vae_encoder_pos_enc (fixed), vae_encoder.layers.*, encoder.layers.*, decoder.layers.*, decoder.norm;
    normalization buffers normalize_inputs.buffer_observation_state.{mean,std}, normalize_targets.buffer_action.*
    (older releases) or a separate stats safetensors with "observation.state.mean" style keys (newer releases).
    LeRobot's decoder really uses its last layer, so every decoder layer is imported.

Transformer layer internals (self_attn.in_proj_weight, linear1, norm1, ...) have the same names in all three.
"""

from __future__ import annotations

import io
import json
import pickle
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from safetensors.torch import load_file

from assets_store.stats import NormStats, stats_to_json
from model.act import ACT
from model.backbone import IMAGENET_MEAN, IMAGENET_STD
from model.config import ACTConfig
from model.export import bundle_config, write_bundle

# ----------------------------------------------------------------------------- safe pickle
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # protocol-2 pickles spell bytes this way
}


class _StatsUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        if module == "numpy.dtypes" and name.endswith("DType"):  # numpy 2 dtype classes
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: stats pickles may hold only numpy arrays")


def load_stats_pickle(path_or_bytes: Path | bytes) -> dict[str, Any]:
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    obj = _StatsUnpickler(io.BytesIO(data)).load()
    if not isinstance(obj, dict):
        raise ValueError(f"expected a dict of statistics, got {type(obj).__name__}")
    return obj


def _norm_stats(mean, std, count: int = 0) -> NormStats:
    mean = np.asarray(mean, dtype=np.float64).reshape(-1)
    std = np.asarray(std, dtype=np.float64).reshape(-1)
    # min/max are not in these formats; record mean as both and count 0 ("unknown")
    return NormStats(mean=mean, std=std, min=mean.copy(), max=mean.copy(), count=count)


def original_stats(pkl: Mapping[str, Any]) -> dict[str, NormStats]:
    missing = [k for k in ("qpos_mean", "qpos_std", "action_mean", "action_std") if k not in pkl]
    if missing:
        raise ValueError(f"dataset_stats.pkl lacks {missing}")
    return {"qpos": _norm_stats(pkl["qpos_mean"], pkl["qpos_std"]),
            "action": _norm_stats(pkl["action_mean"], pkl["action_std"])}


# ----------------------------------------------------------------------------- key mapping
_LAYER = re.compile(r"^(?P<stack>.+?)\.layers\.(?P<i>\d+)\.(?P<rest>.+)$")

_ORIGINAL_RENAMES = {
    "input_proj": "input_proj",
    "input_proj_robot_state": "qpos_proj",
    "latent_out_proj": "latent_out_proj",
    "additional_pos_embed": "extra_pos",
    "query_embed": "query_embed",
    "action_head": "action_head",
    "cls_embed": "cls_embed",
    "encoder_action_proj": "vae_action_proj",
    "encoder_joint_proj": "vae_qpos_proj",
    "latent_proj": "latent_proj",
    "transformer.decoder.norm": "dec_norm",
}
_ORIGINAL_STACKS = {"encoder": "vae_layers", "transformer.encoder": "enc_layers", "transformer.decoder": "dec_layers"}
_ORIGINAL_DROP = ("is_pad_head", "pos_table")

_LEROBOT_RENAMES = {
    "encoder_img_feat_input_proj": "input_proj",
    "encoder_robot_state_input_proj": "qpos_proj",
    "encoder_latent_input_proj": "latent_out_proj",
    "encoder_1d_feature_pos_embed": "extra_pos",
    "decoder_pos_embed": "query_embed",
    "action_head": "action_head",
    "vae_encoder_cls_embed": "cls_embed",
    "vae_encoder_robot_state_input_proj": "vae_qpos_proj",
    "vae_encoder_action_input_proj": "vae_action_proj",
    "vae_encoder_latent_output_proj": "latent_proj",
    "decoder.norm": "dec_norm",
}
_LEROBOT_STACKS = {"vae_encoder": "vae_layers", "encoder": "enc_layers", "decoder": "dec_layers"}
_LEROBOT_DROP = ("vae_encoder_pos_enc",)


def _strip(sd: Mapping[str, torch.Tensor], prefix: str = "model.") -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def _rename(sd, renames, stacks, drop, backbone_prefix: str, max_layer: dict[str, int] | None = None):
    out, unknown = {}, []
    for key, value in sd.items():
        if key.startswith(backbone_prefix):
            rest = key[len(backbone_prefix):]
            if not rest.endswith("num_batches_tracked"):
                out["backbone." + rest] = value
            continue
        if key.split(".")[0] in drop:
            continue
        m = _LAYER.match(key)
        if m and m["stack"] in stacks:
            i = int(m["i"])
            if max_layer and m["stack"] in max_layer and i >= max_layer[m["stack"]]:
                continue  # decoder layers the original never reads
            out[f"{stacks[m['stack']]}.{i}.{m['rest']}"] = value
            continue
        module, _, param = key.rpartition(".")
        if module in renames:
            out[f"{renames[module]}.{param}"] = value
            continue
        unknown.append(key)
    if unknown:
        raise ValueError(f"unrecognized checkpoint keys: {unknown[:8]}{' ...' if len(unknown) > 8 else ''}")
    return out


def _count_layers(sd: Mapping[str, torch.Tensor], stack: str) -> int:
    pat = re.compile(rf"^{re.escape(stack)}\.(\d+)\.")
    idx = {int(m[1]) for k in sd if (m := pat.match(k))}
    return max(idx) + 1 if idx else 0


def _shapes_config(our: Mapping[str, torch.Tensor], **kw) -> dict[str, Any]:
    hidden = our["query_embed.weight"].shape[1]
    return dict(
        hidden_dim=hidden,
        chunk_size=our["query_embed.weight"].shape[0],
        dim_feedforward=our["enc_layers.0.linear1.weight"].shape[0],
        state_dim=our["qpos_proj.weight"].shape[1],
        action_dim=our["action_head.weight"].shape[0],
        latent_dim=our["latent_out_proj.weight"].shape[1],
        enc_layers=_count_layers(our, "enc_layers"),
        dec_layers=_count_layers(our, "dec_layers"),
        vae_enc_layers=_count_layers(our, "vae_layers"),
        backbone_norm="frozen_bn",
        pretrained_backbone=False,
        **kw,
    )


def _build(our: dict[str, torch.Tensor], cfg: ACTConfig) -> ACT:
    model = ACT(cfg)
    model.load_state_dict({k: v.float() for k, v in our.items()}, strict=True)
    return model.eval()


def import_original(
    state_dict: Mapping[str, torch.Tensor] | Path,
    stats: Mapping[str, Any] | Path,
    camera_names: list[str],
    *,
    nheads: int = 8,
    kl_weight: float = 10.0,
) -> tuple[ACT, dict[str, NormStats]]:
    """An original ACT checkpoint (+ its dataset_stats.pkl) -> (our model, normalization stats)."""
    if isinstance(state_dict, (str, Path)):
        state_dict = torch.load(state_dict, map_location="cpu", weights_only=True)
    if not isinstance(stats, Mapping):
        stats = load_stats_pickle(stats)
    raw = _strip(state_dict)
    if any(k.startswith("backbones.1.") for k in raw):
        raise ValueError("checkpoint has one backbone per camera; the original forward uses backbones[0] only "
                         "and so does this importer: drop the others or import by hand")
    our = _rename(raw, _ORIGINAL_RENAMES, _ORIGINAL_STACKS, _ORIGINAL_DROP, "backbones.0.0.body.",
                  max_layer={"transformer.decoder": 1})
    cfg = ACTConfig(**_shapes_config(our, nheads=nheads, kl_weight=kl_weight, camera_names=list(camera_names),
                                     loss_normalization="all"))
    return _build(our, cfg), original_stats(stats)


def lerobot_camera_names(config: Mapping[str, Any]) -> list[str]:
    feats = config.get("input_features") or config.get("input_shapes") or {}
    names = [k.split("observation.images.", 1)[1] for k in feats if k.startswith("observation.images.")]
    if not names and "observation.image" in feats:
        names = ["image"]
    return names


def _lerobot_stats(sd: Mapping[str, torch.Tensor], extra: Mapping[str, torch.Tensor]) -> dict[str, NormStats]:
    def get(*keys):
        for k in keys:
            if k in sd:
                return sd[k]
            if k in extra:
                return extra[k]
        raise ValueError(f"LeRobot checkpoint: no normalization statistics found (looked for {keys})")

    out = {
        "qpos": _norm_stats(get("normalize_inputs.buffer_observation_state.mean", "observation.state.mean"),
                            get("normalize_inputs.buffer_observation_state.std", "observation.state.std")),
        "action": _norm_stats(get("normalize_targets.buffer_action.mean", "unnormalize_outputs.buffer_action.mean", "action.mean"),
                              get("normalize_targets.buffer_action.std", "unnormalize_outputs.buffer_action.std", "action.std")),
    }
    for k, v in {**extra, **sd}.items():  # image normalization must be ImageNet's: that is what our model applies
        if "images" in k and (k.endswith(".mean") or k.endswith(".std")):
            want = torch.tensor(IMAGENET_MEAN if k.endswith(".mean") else IMAGENET_STD)
            if not torch.allclose(v.float().reshape(-1), want, atol=1e-4):
                raise ValueError(f"{k}: image normalization {v.reshape(-1).tolist()} is not ImageNet's; unsupported")
    return out


def import_lerobot(path_or_state: Path | Mapping[str, torch.Tensor], config: Mapping[str, Any] | None = None,
                   stats_state: Mapping[str, torch.Tensor] | None = None) -> tuple[ACT, dict[str, NormStats]]:
    """A LeRobot ACT checkpoint directory (model.safetensors + config.json) -> (our model, normalization stats)."""
    extra: dict[str, torch.Tensor] = dict(stats_state or {})
    if isinstance(path_or_state, (str, Path)):
        d = Path(path_or_state)
        sd = load_file(str(d / "model.safetensors"))
        config = json.loads((d / "config.json").read_text())
        for f in sorted(d.glob("*normalizer*.safetensors")):  # newer releases keep stats beside the model
            extra.update(load_file(str(f)))
    else:
        sd = dict(path_or_state)
    if config is None:
        raise ValueError("a LeRobot config is required")
    if config.get("pre_norm", False):
        raise ValueError("LeRobot config has pre_norm=True; ACT here is post-norm (the original)")
    if config.get("feedforward_activation", "relu") != "relu":
        raise ValueError("only the relu feed-forward activation is supported")
    raw = _strip(sd)
    if "encoder_env_state_input_proj.weight" in raw:
        raise ValueError("LeRobot checkpoint uses an environment-state input; not supported")
    our = _rename(raw, _LEROBOT_RENAMES, _LEROBOT_STACKS, _LEROBOT_DROP, "backbone.")
    cams = lerobot_camera_names(config)
    cfg = ACTConfig(**_shapes_config(our, nheads=int(config.get("n_heads", 8)),
                                     kl_weight=float(config.get("kl_weight", 10.0)),
                                     use_vae=bool(config.get("use_vae", True)),
                                     camera_names=cams))
    return _build(our, cfg), _lerobot_stats(sd, extra)


def to_bundle(model: ACT, stats: dict[str, NormStats], bundle_dir: Path, *, joint_names: list[str],
              action_names: list[str], fps: float, image_size: tuple[int, int], source: str = "",
              robot: str = "", tasks: tuple[str, ...] = ()) -> Path:
    """Write an imported model as a sealed policy bundle (`robot`/`tasks`: what it was trained for, if known)."""
    cfg = model.cfg
    if len(joint_names) != cfg.state_dim or len(action_names) != cfg.action_dim:
        raise ValueError(f"names: expected {cfg.state_dim} joints and {cfg.action_dim} actions, "
                         f"got {len(joint_names)} and {len(action_names)}")
    meta = {"joint_names": joint_names, "action_names": action_names, "fps": fps, "image_size": list(image_size),
            "robot": robot, "tasks": list(tasks)}
    return write_bundle(bundle_dir, model.state_dict(), bundle_config(cfg.model_dump(), meta), stats_to_json(stats),
                        extra={"imported_from": source})
