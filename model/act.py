"""Action Chunking with Transformers (arXiv 2304.13705), the whole network in one file.

    training:   [CLS, qpos, a_t .. a_t+k]  --CVAE encoder-->  mu, logvar  --reparametrize-->  z
    both:       cameras --ResNet18 (shared)--> 1x1 proj + 2-D sine pos, joined along width
                [z token, qpos token, image tokens] --transformer encoder--> memory
                k learned queries --transformer decoder (cross-attends memory)--> Linear --> k actions
    inference:  z = 0 (the prior mean)

Post-norm layers with positions added to queries and keys (DETR style), as in the reference code. Tensors are
batch-first throughout. Inputs: qpos normalized (B, J); images float in [0, 1] (B, N, 3, H, W); actions normalized
(B, k, A) with an is_pad mask (B, k). ImageNet mean/std is applied here, like the original policy wrapper.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from model.backbone import IMAGENET_MEAN, IMAGENET_STD, ResNetBackbone
from model.config import ACTConfig


# ----------------------------------------------------------------------------- position embeddings
def sinusoid_table(n_position: int, dim: int) -> torch.Tensor:
    """(n_position, dim) fixed 1-D table: sin on even channels, cos on odd, wavelengths 10000^(2i/dim)."""
    pos = torch.arange(n_position, dtype=torch.float64)[:, None]
    rate = torch.pow(10000.0, 2 * (torch.arange(dim) // 2).double() / dim)
    angle = pos / rate
    table = torch.empty(n_position, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angle[:, 0::2])
    table[:, 1::2] = torch.cos(angle[:, 1::2])
    return table.float()


def sine_2d(h: int, w: int, dim: int, temperature: float = 10000.0, device: torch.device | None = None) -> torch.Tensor:
    """(dim, h, w) normalized 2-D sine embedding: first half encodes y, second half x (DETR layout). Built on `device`:
    no host-to-device copy in the forward, so a CUDA graph can capture it (model.cuda_graph)."""
    half = dim // 2
    eps, scale = 1e-6, 2 * math.pi
    y = torch.arange(1, h + 1, dtype=torch.float32, device=device)
    x = torch.arange(1, w + 1, dtype=torch.float32, device=device)
    y = y / (y[-1] + eps) * scale
    x = x / (x[-1] + eps) * scale
    freq = temperature ** (2 * (torch.arange(half, dtype=torch.float32, device=device) // 2) / half)

    def encode(v: torch.Tensor) -> torch.Tensor:  # (n,) -> (n, half), interleaved sin/cos
        a = v[:, None] / freq
        return torch.stack((a[:, 0::2].sin(), a[:, 1::2].cos()), dim=2).flatten(1)

    pos_y = encode(y)[:, None, :].expand(h, w, half)
    pos_x = encode(x)[None, :, :].expand(h, w, half)
    return torch.cat((pos_y, pos_x), dim=2).permute(2, 0, 1).contiguous()


# ----------------------------------------------------------------------------- transformer layers
class EncoderLayer(nn.Module):
    def __init__(self, cfg: ACTConfig):
        super().__init__()
        d = cfg.hidden_dim
        self.self_attn = nn.MultiheadAttention(d, cfg.nheads, dropout=cfg.dropout, batch_first=True)
        self.linear1 = nn.Linear(d, cfg.dim_feedforward)
        self.linear2 = nn.Linear(cfg.dim_feedforward, d)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.dropout = nn.Dropout(cfg.dropout)
        self.dropout1, self.dropout2 = nn.Dropout(cfg.dropout), nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, key_padding_mask: torch.Tensor | None = None):
        qk = x + pos
        x = self.norm1(x + self.dropout1(self.self_attn(qk, qk, x, key_padding_mask=key_padding_mask, need_weights=False)[0]))
        x = self.norm2(x + self.dropout2(self.linear2(self.dropout(F.relu(self.linear1(x))))))
        return x


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ACTConfig):
        super().__init__()
        d = cfg.hidden_dim
        self.self_attn = nn.MultiheadAttention(d, cfg.nheads, dropout=cfg.dropout, batch_first=True)
        self.multihead_attn = nn.MultiheadAttention(d, cfg.nheads, dropout=cfg.dropout, batch_first=True)
        self.linear1 = nn.Linear(d, cfg.dim_feedforward)
        self.linear2 = nn.Linear(cfg.dim_feedforward, d)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.dropout = nn.Dropout(cfg.dropout)
        self.dropout1, self.dropout2, self.dropout3 = (nn.Dropout(cfg.dropout) for _ in range(3))

    def forward(self, x, memory, query_pos, memory_pos):
        q = x + query_pos
        x = self.norm1(x + self.dropout1(self.self_attn(q, q, x, need_weights=False)[0]))
        x = self.norm2(x + self.dropout2(
            self.multihead_attn(x + query_pos, memory + memory_pos, memory, need_weights=False)[0]))
        x = self.norm3(x + self.dropout3(self.linear2(self.dropout(F.relu(self.linear1(x))))))
        return x


# ----------------------------------------------------------------------------- the model
class ACT(nn.Module):
    def __init__(self, cfg: ACTConfig):
        super().__init__()
        self.cfg = cfg
        d, k = cfg.hidden_dim, cfg.chunk_size

        # CVAE encoder (training only)
        self.cls_embed = nn.Embedding(1, d)
        self.vae_qpos_proj = nn.Linear(cfg.state_dim, d)
        self.vae_action_proj = nn.Linear(cfg.action_dim, d)
        self.vae_layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.vae_enc_layers))
        self.latent_proj = nn.Linear(d, 2 * cfg.latent_dim)
        self.register_buffer("vae_pos", sinusoid_table(2 + k, d), persistent=False)

        # observation encoder
        self.backbone = ResNetBackbone(cfg.backbone_norm, cfg.backbone_stages)
        self.input_proj = nn.Conv2d(self.backbone.out_channels, d, kernel_size=1)
        self.qpos_proj = nn.Linear(cfg.state_dim, d)
        self.latent_out_proj = nn.Linear(cfg.latent_dim, d)
        self.extra_pos = nn.Embedding(2, d)  # learned positions of the [z, qpos] tokens
        self.enc_layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.enc_layers))

        # decoder
        self.query_embed = nn.Embedding(k, d)
        self.dec_layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.dec_layers))
        self.dec_norm = nn.LayerNorm(d)
        self.action_head = nn.Linear(d, cfg.action_dim)

        self.register_buffer("img_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("img_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.channels_last = False
        self._reset_transformer_parameters()

    def _reset_transformer_parameters(self):
        # xavier on every matrix of the transformer parts (the reference does this for its transformer)
        for mod in (self.vae_layers, self.enc_layers, self.dec_layers):
            for p in mod.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)

    def backbone_parameters(self):
        return self.backbone.parameters()

    # -- pieces ---------------------------------------------------------------------------------
    def encode_latent(self, qpos, actions, is_pad):
        """CVAE posterior q(z | qpos, actions) -> mu, logvar (B, latent)."""
        B = qpos.shape[0]
        tokens = torch.cat(
            [self.cls_embed.weight.expand(B, 1, -1), self.vae_qpos_proj(qpos)[:, None], self.vae_action_proj(actions)],
            dim=1,
        )
        mask = torch.cat([is_pad.new_zeros(B, 2), is_pad], dim=1)
        x, pos = tokens, self.vae_pos[None].to(tokens.dtype)
        for layer in self.vae_layers:
            x = layer(x, pos, key_padding_mask=mask)
        mu, logvar = self.latent_proj(x[:, 0]).chunk(2, dim=-1)
        return mu, logvar

    def image_tokens(self, images):
        """(B, N, 3, H, W) in [0, 1] -> tokens (B, N*h*w, d), positions (1, N*h*w, d). Cameras joined along width."""
        B, N = images.shape[:2]
        x = images.flatten(0, 1)
        x = (x - self.img_mean.to(x.dtype)) / self.img_std.to(x.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        feat = self.input_proj(self.backbone(x))  # (B*N, d, h, w): one shared backbone, all cameras in one pass
        d, h, w = feat.shape[1:]
        feat = feat.view(B, N, d, h, w).permute(0, 2, 3, 1, 4).reshape(B, d, h, N * w)  # join along width
        pos = sine_2d(h, w, d, device=feat.device).to(feat.dtype).repeat(1, 1, N)  # each camera gets its own grid
        return feat.flatten(2).transpose(1, 2), pos.flatten(1).T[None]

    def set_channels_last(self, on: bool = True) -> "ACT":
        """A speed knob, not architecture: NHWC convolutions are faster with oneDNN on CPU."""
        self.channels_last = on
        self.backbone.to(memory_format=torch.channels_last if on else torch.contiguous_format)
        self.input_proj.to(memory_format=torch.channels_last if on else torch.contiguous_format)
        return self

    # -- forward --------------------------------------------------------------------------------
    def forward(self, qpos, images, actions=None, is_pad=None, z=None):
        """-> (actions_hat (B, k, A), mu, logvar). With actions: CVAE training path; without: z = 0 (or given z).

        In eval mode with actions the posterior MEAN is used (deterministic validation loss).
        """
        B = qpos.shape[0]
        mu = logvar = None
        if z is None:
            if self.cfg.use_vae and actions is not None:
                if is_pad is None:
                    is_pad = torch.zeros(actions.shape[:2], dtype=torch.bool, device=actions.device)
                mu, logvar = self.encode_latent(qpos, actions, is_pad)
                z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
            else:
                z = qpos.new_zeros(B, self.cfg.latent_dim)

        img, img_pos = self.image_tokens(images)
        src = torch.cat([self.latent_out_proj(z)[:, None], self.qpos_proj(qpos)[:, None], img], dim=1)
        pos = torch.cat([self.extra_pos.weight[None].to(img_pos.dtype), img_pos], dim=1)
        for layer in self.enc_layers:
            src = layer(src, pos)

        query_pos = self.query_embed.weight[None].expand(B, -1, -1)
        x = torch.zeros_like(query_pos)
        for layer in self.dec_layers:
            x = layer(x, src, query_pos, pos)
        x = self.dec_norm(x)
        return self.action_head(x), mu, logvar


# ----------------------------------------------------------------------------- loss
def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma) || N(0, 1)) summed over latent dims, mean over the batch."""
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).sum(dim=1).mean()


def act_loss(cfg: ACTConfig, a_hat, actions, is_pad, mu=None, logvar=None, action_mask=None) -> dict[str, torch.Tensor]:
    """L1 over unpadded elements (+ beta * KL). Padded steps never change the loss; nor do padded action dimensions
    (`action_mask` (B, A) False, a co-trained dataset's) when cfg.mask_padded_actions."""
    valid = (~is_pad).unsqueeze(-1).to(a_hat.dtype)
    if action_mask is not None and cfg.mask_padded_actions:
        valid = valid * action_mask.unsqueeze(1).to(a_hat.dtype)  # (B, k, A)
    l1_sum = ((a_hat.float() - actions.float()).abs() * valid).sum()
    if cfg.loss_normalization == "valid":
        denom = valid.sum().clamp_min(1) * (a_hat.shape[-1] // valid.shape[-1])  # valid elements
    else:
        denom = torch.tensor(float(a_hat.numel()), device=a_hat.device)
    out = {"l1": l1_sum / denom}
    if mu is not None:
        out["kl"] = kl_divergence(mu.float(), logvar.float())
        out["loss"] = out["l1"] + cfg.kl_weight * out["kl"]
    else:
        out["loss"] = out["l1"]
    return out


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
