"""Training-time image augmentation (model/augment.py): it changes what the training step feeds the model, never
what validation or inference feeds it, and bundles written before it existed load unchanged."""

from __future__ import annotations

import json

import numpy as np
import torch

import model.train as train_mod
from assets_store import EpisodeReader
from assets_store.bundle import CONFIG, seal_bundle
from model.augment import ImageAugment
from model.data import resize_uint8
from model.export import export_bundle
from model.policy import Policy
from model_kit import tiny_act, tiny_train


def _images(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(4, 2, 3, 32, 48, generator=g)


def test_augment_draws_per_image_and_repeats_with_the_seed():
    aug = ImageAugment(tiny_act(augment=True), (32, 48))
    x = _images()
    x[:, 1] = x[:, 0]  # both cameras see the same picture
    torch.manual_seed(3)
    a = aug(x)
    torch.manual_seed(3)
    b = aug(x)
    assert a.shape == x.shape and torch.equal(a, b)  # a fixed seed gives the same augmented batch
    assert not torch.allclose(a, x, atol=1e-3)
    assert not torch.allclose(a[:, 0], a[:, 1], atol=1e-3)  # each camera draws its own crop, rotation, jitter
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0


def _spy_training(monkeypatch):
    """(what batch_to gave, what the model was fed) for every loss computed, training and validation alike."""
    seen: list[list[torch.Tensor]] = []
    real_batch_to, real_loss = train_mod.batch_to, train_mod.compute_loss

    def batch_to(batch, device):
        out = real_batch_to(batch, device)
        seen.append([out["images"].clone()])
        return out

    def compute_loss(model, batch, cfg, bf16):
        seen[-1].append(batch["images"].clone())
        return real_loss(model, batch, cfg, bf16)

    monkeypatch.setattr(train_mod, "batch_to", batch_to)
    monkeypatch.setattr(train_mod, "compute_loss", compute_loss)
    return seen


def test_training_step_augments_and_validation_does_not(tiny_dataset, tmp_path, monkeypatch):
    seen = _spy_training(monkeypatch)
    res = train_mod.train(tiny_dataset, tmp_path / "run", tiny_act(augment=True),
                          tiny_train(steps=1, val_every=1, checkpoint_every=1, val_batches=1))
    (loaded, fed), *validation = seen
    assert loaded.shape == fed.shape and not torch.allclose(loaded, fed, atol=1e-3)  # the training step's batch
    assert validation and all(torch.equal(a, b) for a, b in validation)
    # off (the default): the training step feeds the batch as loaded
    seen.clear()
    train_mod.train(tiny_dataset, tmp_path / "plain", tiny_act(), tiny_train(steps=1, val_every=1, val_batches=1))
    assert all(torch.equal(a, b) for a, b in seen)

    # recorded in the bundle's config; inference feeds the frames as they are, whatever the RNG
    bundle = export_bundle(res.best_checkpoint, tmp_path / "bundle")
    act = json.loads((bundle / CONFIG).read_text())["act"]
    assert act["augment"] is True and act["augment_rotation_deg"] == 5.0
    policy = Policy.from_bundle(bundle, temporal_ensemble_k=None)
    reader = EpisodeReader(sorted((tiny_dataset.parent.parent / "raw" / "s1").glob("episode_*.zarr"))[0])
    frames = {cam: reader.frame(cam, 3) for cam in policy.camera_names}
    fed_inference: list[torch.Tensor] = []
    forward = policy._forward
    policy._forward = lambda q, imgs: (fed_inference.append(imgs.clone()), forward(q, imgs))[1]
    chunks = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        chunks.append(policy.predict_chunk(reader.qpos[3], frames))
    expected = torch.stack([resize_uint8(frames[c], policy.image_size) for c in policy.camera_names])[None] / 255.0
    assert all(torch.equal(imgs, expected) for imgs in fed_inference)
    np.testing.assert_array_equal(chunks[0], chunks[1])

    # a bundle from before augmentation existed (no augment fields) loads, and predicts the same
    config = json.loads((bundle / CONFIG).read_text())
    config["act"] = {k: v for k, v in config["act"].items() if not k.startswith("augment")}
    (bundle / CONFIG).write_text(json.dumps(config))
    seal_bundle(bundle)
    old = Policy.from_bundle(bundle, temporal_ensemble_k=None)
    assert old.cfg.augment is False
    np.testing.assert_array_equal(old.predict_chunk(reader.qpos[3], frames), chunks[0])
