"""Model arithmetic: shapes, masking, KL, z = 0 determinism, temporal ensembling, normalization, embeddings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from assets_store.stats import NormStats
from model.act import ACT, act_loss, kl_divergence, sine_2d, sinusoid_table
from model.config import ACTConfig, TrainConfig
from model.policy import TemporalEnsembler, ensemble_weights

from model_kit import tiny_act


def _inputs(B=2, N=2, H=32, W=48, k=10, A=4, J=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, J, generator=g), torch.rand(B, N, 3, H, W, generator=g),
            torch.randn(B, k, A, generator=g), torch.zeros(B, k, dtype=torch.bool))


def test_configs_defaults_and_presets():
    paper = ACTConfig()
    assert (paper.hidden_dim, paper.dim_feedforward, paper.nheads, paper.enc_layers, paper.chunk_size) == (512, 3200, 8, 4, 100)
    assert paper.dec_layers == 1 and paper.kl_weight == 10 and paper.dropout == 0.1 and paper.latent_dim == 32
    t = TrainConfig()
    assert t.resolved_lrs(paper) == (1e-5, 1e-5) and t.weight_decay == 1e-4 and t.batch_size == 8
    small = ACTConfig.small()
    assert (small.hidden_dim, small.dim_feedforward, small.enc_layers, small.chunk_size) == (256, 1024, 2, 50)
    assert TrainConfig().resolved_lrs(small)[0] == 1e-4
    assert ACTConfig(**small.model_dump()) == small
    with pytest.raises(ValueError):
        TrainConfig(steps=None, time_budget_s=None)



def test_named_presets_and_the_one_budget():
    from model.config import DEMO, PRESETS, SMALL_15MIN, get_preset

    assert list(PRESETS) == ["paper", "small", "small_15min", "demo"]
    small = get_preset("small").train_config()
    assert (small.image_size, small.lr, small.lr_schedule, small.warmup_steps, small.steps) == ((120, 160), 1e-4, "cosine", 100, 2000)
    # a plain train_and_deploy run: the small architecture on a 15-minute budget, its rate from the architecture
    pipe_act, pipe = SMALL_15MIN.act_config(), SMALL_15MIN.train_config()
    assert pipe_act.model_dump(exclude={"preset"}) == ACTConfig.small().model_dump(exclude={"preset"})
    assert (pipe.steps, pipe.time_budget_s, pipe.val_every, pipe.checkpoint_every, pipe.num_workers) == (None, 900.0, 500, 500, 1)
    assert pipe.resolved_lrs(pipe_act) == (1e-4, 1e-4)
    # the demo: 20 minutes at 60x80, ResNet18 to layer3, no dropout, 2e-4
    act, train = DEMO.act_config(), DEMO.train_config()
    assert (act.preset, act.backbone_stages, act.dropout, act.hidden_dim) == ("demo", 3, 0.0, 256)
    assert (train.time_budget_s, train.image_size, train.lr, train.lr_backbone, train.steps) == (1200.0, (60, 80), 2e-4, 2e-4, None)
    # steps and time_budget_s are one budget: setting either replaces both
    assert (DEMO.train_config(steps=10).steps, DEMO.train_config(steps=10).time_budget_s) == (10, None)
    assert get_preset("paper").train_config(time_budget_s=60.0).steps is None
    assert get_preset("paper").act_config(hidden_dim=256).preset == "paper"
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("huge")
    # every field says what it is (the CLI help and the Dagster launchpad show it)
    assert all(f.description for cls in (ACTConfig, TrainConfig) for f in cls.model_fields.values())
    # bf16 left empty is settled for the device on construction, so a checkpoint records what was used
    assert isinstance(TrainConfig().bf16, bool) and TrainConfig(bf16=False).bf16 is False

def test_shapes_train_and_inference():
    torch.manual_seed(0)
    m = ACT(tiny_act())
    q, im, a, pad = _inputs()
    out, mu, logvar = m(q, im, a, pad)
    assert out.shape == (2, 10, 4) and mu.shape == logvar.shape == (2, 32)
    m.eval()
    out, mu, logvar = m(q, im)
    assert out.shape == (2, 10, 4) and mu is None


def test_three_stage_backbone_has_stride_16_and_takes_imagenet_weights():
    from torchvision.models import resnet18

    from model.backbone import ResNetBackbone, load_pretrained_into

    full, short = ResNetBackbone("frozen_bn", 4), ResNetBackbone("frozen_bn", 3)
    x = torch.rand(2, 3, 64, 96)
    assert full(x).shape == (2, 512, 2, 3) and short(x).shape == (2, 256, 4, 6)
    assert not any(k.startswith("layer4") for k in short.state_dict())
    # a full ResNet18 state dict (as torchvision ships it) loads; its layer4 and fc are left out
    state = resnet18(weights=None).state_dict()
    load_pretrained_into(short, state)
    assert torch.equal(short.layer3[1].conv2.weight, state["layer3.1.conv2.weight"])
    # the ACT built on it trains end to end and its checkpoint rebuilds the same network
    m = ACT(tiny_act(backbone_stages=3))
    q, im, a, pad = _inputs()
    out, _, _ = m(q, im, a, pad)
    out.abs().mean().backward()
    assert m.input_proj.in_channels == 256 and m.backbone.layer3[0].conv1.weight.grad is not None
    with pytest.raises(ValueError):
        ACTConfig(backbone_stages=2)
    with pytest.raises(ValueError, match="dropout"):
        ACTConfig(dropout=1.0)


def test_padded_steps_do_not_change_loss():
    torch.manual_seed(0)
    cfg = tiny_act()
    m = ACT(cfg).eval()  # eval: z = posterior mean, deterministic
    q, im, a, pad = _inputs()
    pad[:, 6:] = True
    a2 = a.clone()
    a2[:, 6:] = 1e3  # garbage in the padded part
    out1 = act_loss(cfg, *m(q, im, a, pad)[:1], a, pad)["l1"]
    out2 = act_loss(cfg, *m(q, im, a2, pad)[:1], a2, pad)["l1"]
    assert torch.equal(out1, out2)  # the CVAE encoder masks padded keys too
    # normalization over valid elements only
    a_hat = torch.zeros(1, 4, 2)
    target = torch.ones(1, 4, 2)
    p = torch.tensor([[False, False, True, True]])
    assert act_loss(cfg, a_hat, target, p)["l1"].item() == pytest.approx(1.0)
    assert act_loss(cfg.model_copy(update={"loss_normalization": "all"}), a_hat, target, p)["l1"].item() == pytest.approx(0.5)


def test_kl_term():
    mu = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)], [0.0, 0.0]])
    # per sample: 0.5 * sum(mu^2 + var - 1 - logvar)
    want = (0.5 * (1 + (2 - 1 - math.log(2))) + 0.5 * 4) / 2
    assert kl_divergence(mu, logvar).item() == pytest.approx(want)
    assert kl_divergence(torch.zeros(3, 4), torch.zeros(3, 4)).item() == 0.0
    cfg = tiny_act(kl_weight=10.0)
    losses = act_loss(cfg, torch.zeros(2, 3, 1), torch.zeros(2, 3, 1), torch.zeros(2, 3, dtype=torch.bool), mu, logvar)
    assert losses["loss"].item() == pytest.approx(10 * want)


def test_inference_is_deterministic_z_zero():
    torch.manual_seed(0)
    m = ACT(tiny_act(dropout=0.1)).eval()
    q, im, _, _ = _inputs()
    with torch.inference_mode():
        a1, a2 = m(q, im)[0], m(q, im)[0]
        a3 = m(q, im, z=torch.zeros(2, 32))[0]
    assert torch.equal(a1, a2) and torch.equal(a1, a3)


def test_deeper_decoder_uses_last_layer():
    torch.manual_seed(0)
    m = ACT(tiny_act(dec_layers=2)).eval()
    q, im, _, _ = _inputs()
    before = m(q, im)[0]
    with torch.no_grad():
        # Not a constant: a LayerNorm after the layer removes a shift shared by every feature, whatever the layer.
        bias = m.dec_layers[1].linear2.bias
        bias.add_(torch.linspace(-1.0, 1.0, bias.numel()))
    assert not torch.allclose(before, m(q, im)[0])


def test_temporal_ensembling_hand_computed():
    k = 0.5
    ens = TemporalEnsembler(k)
    # chunks of length 3, one scalar action; chunk predicted at step s is [10s+0, 10s+1, 10s+2]
    chunks = [np.array([[10 * s + j] for j in range(3)], float) for s in range(4)]
    got = []
    for t in range(4):
        ens.push(t, chunks[t])
        got.append(ens.pop(t)[0])
    w = lambda n: np.exp(-k * np.arange(n)) / np.exp(-k * np.arange(n)).sum()  # noqa: E731
    # step 2: predictions from chunks 0,1,2 (oldest first): 2, 11, 20
    assert got[0] == pytest.approx(0.0)
    assert got[1] == pytest.approx(w(2) @ [1, 10])
    assert got[2] == pytest.approx(w(3) @ [2, 11, 20])
    assert got[3] == pytest.approx(w(3) @ [12, 21, 30])  # chunk 0 no longer covers step 3
    # oldest gets the largest weight for k > 0
    assert ensemble_weights(3, 0.01)[0] > ensemble_weights(3, 0.01)[2]
    assert got[2] == pytest.approx((2 * 1 + 11 * math.exp(-0.5) + 20 * math.exp(-1)) / (1 + math.exp(-0.5) + math.exp(-1)))


def test_normalization_round_trip():
    x = np.random.default_rng(0).normal(3, 2, size=(50, 4))
    s = NormStats(x.mean(0), np.maximum(x.std(0), 1e-2), x.min(0), x.max(0), 50)
    np.testing.assert_allclose(s.unnormalize(s.normalize(x)), x, rtol=1e-12, atol=1e-12)
    assert np.abs(s.normalize(x).mean(0)).max() < 1e-9


def test_position_tables():
    t = sinusoid_table(5, 8)
    assert t.shape == (5, 8)
    assert t[3, 0].item() == pytest.approx(math.sin(3)) and t[3, 1].item() == pytest.approx(math.cos(3))
    assert t[2, 2].item() == pytest.approx(math.sin(2 / 10000 ** (2 / 8)), rel=1e-5)
    p = sine_2d(2, 3, 8)
    assert p.shape == (8, 2, 3)
    # y half constant along x, x half constant along y; last position normalized to 2*pi
    assert torch.allclose(p[:4, :, 0], p[:4, :, 2]) and torch.allclose(p[4:, 0], p[4:, 1])
    assert p[0, 1, 0].item() == pytest.approx(math.sin(2 * math.pi / (1 + 1e-6 / 2)), abs=1e-5)
