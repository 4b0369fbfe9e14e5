"""Co-training in the model: padded static actions and their mask, a loss that leaves padded dimensions out, groups
drawn at their sampling weights, and a tiny model trained on a static + mobile dataset (resumed exactly)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from assets_store import EpisodeReader, StoreLayout
from assets_store.dataset import load_dataset
from cotrain_kit import mixed_dataset, record_both
from model.act import act_loss
from model.data import ChunkDataset, GroupSampler
from model.train import cli_app, train
from model_kit import tiny_act, tiny_train

BASE = slice(14, 16)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> StoreLayout:
    layout = StoreLayout(tmp_path_factory.mktemp("cotrain") / "store")
    record_both(layout)
    return layout


def test_loss_leaves_padded_dimensions_out():
    torch.manual_seed(0)
    actions, a_hat = torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    is_pad = torch.zeros(2, 5, dtype=torch.bool)
    is_pad[1, 3:] = True
    mask = torch.tensor([[True, True, True, True], [True, True, False, False]])  # sample 1: dims 2, 3 padded
    masked, kept = tiny_act(action_dim=4), tiny_act(action_dim=4, mask_padded_actions=False)
    assert masked.mask_padded_actions  # the default
    loss = act_loss(masked, a_hat, actions, is_pad, action_mask=mask)["l1"]
    valid = (~is_pad)[..., None] & mask[:, None, :]
    assert loss.item() == pytest.approx(((a_hat - actions).abs()[valid]).mean().item(), rel=1e-6)
    moved = a_hat.clone()
    moved[1, :, 2:] += 100.0  # predictions in padded dimensions do not count...
    assert act_loss(masked, moved, actions, is_pad, action_mask=mask)["l1"].item() == pytest.approx(loss.item(), rel=1e-6)
    # ...unless the setting keeps them in (the original), which is the loss without a mask
    plain = act_loss(kept, a_hat, actions, is_pad)["l1"]
    assert act_loss(kept, a_hat, actions, is_pad, action_mask=mask)["l1"].item() == plain.item()
    assert act_loss(kept, moved, actions, is_pad, action_mask=mask)["l1"].item() > plain.item() + 1


def test_loader_pads_static_actions_and_masks_them(store):
    dataset = mixed_dataset(store)
    manifest, stats = load_dataset(dataset)
    ds = ChunkDataset(dataset, "all", chunk_size=5, image_size=(32, 32), base_smoothing_window=1)
    assert (ds.state_dim, ds.action_dim, ds.camera_names, ds.has_padding) == (14, 16, ["top"], True)
    a = stats["action"]
    for ep, ref in enumerate(manifest.episodes):
        reader = EpisodeReader(ref.path(StoreLayout.of_dataset(dataset)))
        rows = ds.action[ds.starts[ep] : ds.starts[ep + 1]]
        item = ds[int(ds.starts[ep]) + 2]
        assert item["images"].shape == (1, 3, 32, 32) and item["actions"].shape == (5, 16)
        if ref.session == "static":  # 14-D, padded with the recipe's zeros (normalized with the mobile statistics)
            np.testing.assert_allclose(rows[:, :14], (reader.action - a.mean[:14]) / a.std[:14], rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(rows[:, BASE], np.broadcast_to(-a.mean[BASE] / a.std[BASE], (20, 2)), rtol=1e-5)
            assert item["action_mask"].tolist() == [True] * 14 + [False, False]
        else:
            np.testing.assert_allclose(rows, (reader.action - a.mean) / a.std, rtol=1e-5, atol=1e-5)
            assert item["action_mask"].all()


def test_loader_reads_a_mapped_camera_under_the_target_name(store):
    dataset = mixed_dataset(store, cameras=["cam_high"], static_cameras={"cam_high": "top"})
    manifest, _ = load_dataset(dataset)
    ds = ChunkDataset(dataset, "all", chunk_size=5, image_size=(32, 32))
    assert ds.camera_names == ["cam_high"]
    for ep, ref in enumerate(manifest.episodes):
        reader = EpisodeReader(ref.path(StoreLayout.of_dataset(dataset)))
        own = "top" if ref.session == "static" else "cam_high"  # the static episode's frame of its `top` camera
        item = ds[int(ds.starts[ep]) + 3]
        expected = torch.from_numpy(np.ascontiguousarray(reader.frame(own, 3))).permute(2, 0, 1)
        assert torch.equal(item["images"][0], expected)


def test_groups_are_sampled_at_their_weights_over_many_batches(store):
    # Groups of 40 and 400 samples drawn 0.7 / 0.3: the share follows the weights, not the sizes.
    groups = [np.arange(0, 40), np.arange(40, 440)]
    sampler = GroupSampler(groups, [0.7, 0.3], seed=5)
    batch, shares = 8, []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        order = np.fromiter(sampler, dtype=np.int64)
        assert len(order) == len(sampler) == 440
        shares += [(b < 40).mean() for b in order[: len(order) // batch * batch].reshape(-1, batch)]
    assert np.mean(shares) == pytest.approx(0.7, abs=0.03)  # 165 batches
    # Within a group, a sample repeats only after all of the group's were drawn.
    first = order[order < 40][:40]
    assert sorted(first.tolist()) == list(range(40))
    # A pure function of (seed, epoch): a resume skips into the same order, DDP ranks take strides of it.
    sampler.start_at(2, 100)
    assert list(sampler) == order[100:].tolist()
    ranks = [list(GroupSampler(groups, [0.7, 0.3], num_replicas=2, rank=r, seed=5)) for r in (0, 1)]
    sampler.set_epoch(0)
    whole = list(sampler)
    assert ranks[0] == whole[0::2] and ranks[1] == whole[1::2]
    # The recorded dataset's groups: the mobile share of a 0.8 / 0.2 dataset.
    ds = ChunkDataset(mixed_dataset(store, mobile=0.8, static=0.2), "train", chunk_size=5, image_size=(32, 32))
    mobile = set(ds.group_samples[0].tolist())
    ds_sampler, draws = GroupSampler(ds.group_samples, [g.weight for g in ds.groups]), []
    for epoch in range(10):
        ds_sampler.set_epoch(epoch)
        draws += list(ds_sampler)
    assert len(ds_sampler) == len(ds) == 80
    assert np.mean([i in mobile for i in draws]) == pytest.approx(0.8, abs=0.05)  # 800 draws


def test_tiny_model_trains_on_a_mixed_dataset_and_resumes_exactly(store, tmp_path):
    torch.set_num_threads(1)
    dataset = mixed_dataset(store, val_fraction=0.5)
    act = tiny_act(camera_names=["top"], state_dim=14, action_dim=16, chunk_size=5)
    cfg = tiny_train(steps=6, batch_size=4, val_every=3, checkpoint_every=3, image_size=(32, 32))
    full = train(dataset, tmp_path / "full", act, cfg)
    assert full.steps == 6 and np.isfinite(full.final_train_loss) and np.isfinite(full.best_val_loss)
    train(dataset, tmp_path / "cut", act, cfg.model_copy(update={"steps": 3}))
    resumed = train(dataset, tmp_path / "cut", act, cfg, resume=True)
    curve = lambda h: [(r["step"], r["loss"]) for r in h if "loss" in r]  # noqa: E731
    assert curve(resumed.history) == curve(full.history)  # bit for bit, sampler included


def test_train_cli_prints_the_groups(store, tmp_path):
    dataset = mixed_dataset(store)
    args = ["--dataset", str(dataset), "--out", str(tmp_path / "run"), "--preset", "small", "--steps", "1",
            "--batch-size", "2", "--chunk-size", "5", "--hidden-dim", "32", "--dim-feedforward", "64", "--nheads", "2",
            "--enc-layers", "1", "--vae-enc-layers", "1", "--no-pretrained", "--image-size", "32x32",
            "--num-workers", "0", "--no-progress", "--no-bf16", "--val-batches", "1"]
    result = CliRunner().invoke(cli_app(), args)
    assert result.exit_code == 0, result.output
    assert "group mobile: weight 0.5 (50% of samples), sessions mobile; dropped cameras cam_high" in result.output
    assert ("group static: weight 0.5 (50% of samples), sessions static; padded base_linear_vel, base_angular_vel; "
            "dropped cameras angle; not in the statistics") in result.output


def test_a_weighted_group_without_samples_is_named():
    with pytest.raises(ValueError, match=r"groups \['static'\] have a sampling weight but no training samples"):
        GroupSampler([np.arange(5), np.zeros(0, np.int64)], [0.5, 0.5], names=["mobile", "static"])
    assert len(GroupSampler([np.arange(5), np.zeros(0, np.int64)], [1.0, 0.0])) == 5  # weight 0: never drawn
