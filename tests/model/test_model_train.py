"""Data, training loop, resume, export and the inference policy on a tiny recorded dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from assets_store import EpisodeReader, StoreLayout
from assets_store.bundle import verify_bundle
from assets_store.dataset import load_dataset
from model.callbacks import HistoryCallback, TrainCallback
from model.checkpoint import load_checkpoint, save_checkpoint
from model.data import ChunkDataset, ResumableSampler
from model.validation_loss import validation_loss
from model.export import export_bundle
from model.policy import Policy
from model.train import make_scheduler, train

from model_kit import JOINTS, tiny_act, tiny_train


def test_dataset_samples(tiny_dataset):
    manifest, stats = load_dataset(tiny_dataset)
    ds = ChunkDataset(tiny_dataset, "train", chunk_size=10, image_size=(32, 48))
    assert len(ds) == sum(e.num_steps for e in manifest.train)
    item = ds[0]
    assert item["images"].shape == (2, 3, 32, 48) and item["images"].dtype == torch.uint8
    assert item["qpos"].shape == (3,) and item["actions"].shape == (10, 4) and not item["is_pad"].any()
    # last step of the first episode: one real action, the rest padded with zeros
    n0 = int(ds.lengths[0])
    last = ds[n0 - 1]
    assert last["is_pad"].tolist() == [False] + [True] * 9 and torch.all(last["actions"][1:] == 0)
    # normalized with the store's statistics
    ref = manifest.train[0]
    r = EpisodeReader(ref.path(StoreLayout.of_dataset(tiny_dataset)))
    np.testing.assert_allclose(last["qpos"].numpy(), stats["qpos"].normalize(r.qpos[n0 - 1]), rtol=1e-5, atol=1e-5)
    val = ChunkDataset(tiny_dataset, "val", chunk_size=10, image_size=(32, 48))
    assert len(val) == sum(e.num_steps for e in manifest.val) > 0


def test_sampler_resumes_mid_epoch():
    s = ResumableSampler(list(range(20)), seed=3)
    s.set_epoch(2)
    full = list(s)
    s.start_at(2, 7)
    assert list(s) == full[7:]
    assert list(s) == full  # only the first pass skips
    shards = [list(ResumableSampler(list(range(20)), num_replicas=2, rank=r, seed=3)) for r in (0, 1)]
    assert sorted(shards[0] + shards[1]) == list(range(20))


def test_tiny_model_overfits(tiny_dataset, tmp_path):
    cb = HistoryCallback()
    cfg = tiny_train(steps=40, batch_size=4, lr=4e-3, lr_backbone=4e-3, val_every=20, checkpoint_every=20, val_batches=1)
    res = train(tiny_dataset, tmp_path / "run", tiny_act(), cfg, [cb])
    losses = [m["l1"] for _, m in cb.metrics]
    start, end = np.mean(losses[:3]), np.mean(losses[-5:])
    assert end < 0.5 * start, (start, end)
    assert res.steps == 40 and res.best_checkpoint.is_file() and res.last_checkpoint.is_file()
    assert res.best_val_loss == min(v for _, v in cb.validations)
    assert [s for s, _ in cb.validations] == [20, 40]


class Crash(Exception):
    pass


class CrashAfter(TrainCallback):
    def __init__(self, step):
        self.step = step

    def on_checkpoint(self, step, path):
        if step == self.step:
            raise Crash(step)


def _curve(history):
    return [(h["step"], h["loss"], h["l1"], h["kl"]) for h in history if "loss" in h]


def test_resume_reproduces_uninterrupted_curve(tiny_dataset, tmp_path):
    cfg = tiny_train(steps=8, batch_size=4, val_every=4, checkpoint_every=4, log_every=1, val_batches=1)
    act = tiny_act(dropout=0.1)  # dropout + CVAE noise: RNG state must survive the restart
    full = train(tiny_dataset, tmp_path / "full", act, cfg)
    with pytest.raises(Crash):
        train(tiny_dataset, tmp_path / "cut", act, cfg, [CrashAfter(4)])
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["step"] == 4
    resumed = train(tiny_dataset, tmp_path / "cut", act, cfg, resume=True)
    assert resumed.steps == 8
    assert _curve(resumed.history) == _curve(full.history)  # bit-for-bit
    assert [h["val_loss"] for h in resumed.history if "val_loss" in h] == [h["val_loss"] for h in full.history if "val_loss" in h]
    a = load_checkpoint(tmp_path / "full" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "cut" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_time_budget_and_atomic_weights_only_checkpoint(tiny_dataset, tmp_path):
    res = train(tiny_dataset, tmp_path / "run", tiny_act(), tiny_train(steps=None, time_budget_s=0.01))
    assert res.steps >= 1 and res.last_checkpoint.is_file()
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.startswith(".")]  # no temp files left
    ckpt = torch.load(res.last_checkpoint, weights_only=True)  # plain containers + tensors only
    assert ckpt["step"] == res.steps and "rng" in ckpt and "optimizer" in ckpt
    # a failed write keeps the previous file intact
    before = res.last_checkpoint.read_bytes()
    with pytest.raises(Exception):
        save_checkpoint({"bad": lambda: 0}, res.last_checkpoint)
    assert res.last_checkpoint.read_bytes() == before
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.startswith(".")]


def test_cosine_schedule_spans_steps_or_wall_clock():
    def lrs(cfg, spent=None):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        sched = make_scheduler(opt, cfg, spent)
        out = [opt.param_groups[0]["lr"]]
        for _ in range(10):
            opt.step()
            sched.step()
            out.append(opt.param_groups[0]["lr"])
        return out

    by_steps = lrs(tiny_train(steps=10, lr_schedule="cosine", warmup_steps=2))
    assert by_steps[:2] == pytest.approx([0.5, 1.0])  # linear warmup
    assert by_steps[6] == pytest.approx(0.5) and by_steps[10] == pytest.approx(0.0)
    assert all(a >= b for a, b in zip(by_steps[1:], by_steps[2:]))
    # a wall-clock budget: progress is the fraction of the budget spent, whatever the step count
    clock = {"spent": 0.0}
    cfg = tiny_train(steps=None, time_budget_s=60.0, lr_schedule="cosine")
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    sched = make_scheduler(opt, cfg, lambda: clock["spent"])
    for spent, want in ((0.5, 1.0), (1.0, 0.0), (2.0, 0.0)):  # clamped once the budget is spent
        clock["spent"] = spent
        opt.step()
        sched.step()
        assert opt.param_groups[0]["lr"] == pytest.approx(want, abs=1e-9)
    with pytest.raises(ValueError, match="budget"):
        tiny_train(steps=None, time_budget_s=None, lr_schedule="cosine")


def test_export_bundle_and_policy(tiny_dataset, tmp_path):
    res = train(tiny_dataset, tmp_path / "run", tiny_act(), tiny_train(steps=4, val_every=2, checkpoint_every=2))
    bundle = export_bundle(res.best_checkpoint, tmp_path / "bundle", mlflow_run_id="r1", metrics={"x": 1.0})
    manifest = verify_bundle(bundle)
    assert manifest["mlflow_run_id"] == "r1" and manifest["metrics"]["x"] == 1.0
    assert manifest["dataset_id"] == tiny_dataset.name
    cfg = json.loads((bundle / "config.json").read_text())
    assert cfg["camera_names"] == ["top", "wrist"] and cfg["joint_names"] == JOINTS and cfg["chunk_size"] == 10
    assert not any(p.suffix in (".pt", ".pkl") for p in bundle.iterdir())
    assert cfg["robot"] == "tiny" and cfg["tasks"] == ["tiny-task"]  # what it was trained for


    pol = Policy.from_bundle(bundle)
    assert pol.image_size == (32, 48) and pol.fps == 50.0 and len(pol.action_names) == 4
    assert pol.trained_for_other("tiny", "tiny-task") is None and pol.trained_for_other("tiny", None) is None
    assert "task(s) ['tiny-task'], not 'other'" in pol.trained_for_other("tiny", "other")
    assert "robot 'tiny', not 'sim-insertion'" in pol.trained_for_other("sim-insertion", "tiny-task")
    pol.check_compatible(["top", "wrist", "extra"], JOINTS)
    with pytest.raises(ValueError, match="wrist"):
        pol.check_compatible(["top"], JOINTS)
    with pytest.raises(ValueError, match="joint"):
        pol.check_compatible(["top", "wrist"], ["a", "b", "c"])

    rng = np.random.default_rng(0)
    obs = [(rng.normal(size=3).astype(np.float32),
            {"top": rng.integers(0, 255, (96, 128, 3), dtype=np.uint8), "wrist": rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)})
           for _ in range(4)]
    chunks = [pol.predict_chunk(q, im) for q, im in obs]
    stats = load_dataset(tiny_dataset)[1]["action"]
    assert np.all(np.isfinite(chunks[0])) and chunks[0].shape == (10, 4)
    # temporal ensembling = the weighted mean of the chunks' predictions for each step
    pol.reset()
    acts = [pol.act(q, im) for q, im in obs]
    w = np.exp(-0.01 * np.arange(3))
    want = (w[0] * chunks[0][2] + w[1] * chunks[1][1] + w[2] * chunks[2][0]) / w.sum()
    np.testing.assert_allclose(acts[2], want, rtol=1e-5, atol=1e-5)
    assert acts[0].dtype == np.float32 and acts[0].shape == (4,)
    # open loop: the first chunk is played for query_every steps
    open_loop = Policy.from_bundle(bundle, temporal_ensemble_k=None, query_every=3)
    played = [open_loop.act(q, im) for q, im in obs]
    np.testing.assert_allclose(np.stack(played[:3]), chunks[0][:3].astype(np.float32), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(played[3], chunks[3][0], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError):
        Policy.from_bundle(bundle, query_every=5)  # ensembling needs every step
    # tampering is caught before loading
    (bundle / "stats.json").write_text((bundle / "stats.json").read_text() + " ")
    with pytest.raises(Exception, match="sha256"):
        Policy.from_bundle(bundle)
    assert stats.std.shape == (4,)


def test_validation_loss_matches_trainer(tiny_dataset, tmp_path):
    res = train(tiny_dataset, tmp_path / "run", tiny_act(), tiny_train(steps=2, val_every=2, checkpoint_every=2, val_batches=None))
    v = validation_loss(res.best_checkpoint, tiny_dataset)
    assert v == pytest.approx(res.best_val_loss, rel=1e-4)


def test_cli_options_are_the_config_fields(tiny_dataset, tmp_path):
    from typer.main import get_command
    from typer.testing import CliRunner

    from model.config import ACTConfig, TrainConfig, tunable_fields
    from model.train import CLI_NAMES, cli_app

    app = cli_app()
    options = {o for p in get_command(app).params for o in p.opts}
    for cls in (ACTConfig, TrainConfig):
        for name in tunable_fields(cls):
            assert "--" + CLI_NAMES.get(name, name).replace("_", "-") in options, name
    assert {"--time-budget", "--pretrained", "--threads", "--image-size", "--preset", "--resume"} <= options
    res = CliRunner().invoke(app, [
        "--dataset", str(tiny_dataset), "--out", str(tmp_path / "run"), "--preset", "small", "--steps", "2",
        "--hidden-dim", "32", "--dim-feedforward", "64", "--nheads", "2", "--enc-layers", "1", "--vae-enc-layers", "1",
        "--chunk-size", "10", "--no-pretrained", "--image-size", "32x48", "--batch-size", "4", "--num-workers", "0",
        "--val-batches", "1", "--no-bf16", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "steps=2" in res.output
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["act_config"]["hidden_dim"] == 32 and ckpt["act_config"]["preset"] == "small"
    assert ckpt["train_config"]["image_size"] == (32, 48) and ckpt["train_config"]["lr_schedule"] == "cosine"
    assert ckpt["train_config"]["time_budget_s"] is None  # --steps replaced the preset's whole budget


def test_the_cli_progress_bar_moves_every_step(tiny_dataset, tmp_path):
    import io

    from rich.console import Console

    from model.callbacks import RichProgressCallback

    seen: list[float] = []

    class Watched(RichProgressCallback):  # the real bar, read after each step
        def on_step(self, step):
            super().on_step(step)
            seen.append(self.progress.tasks[0].completed)

    bar = Watched(console=Console(file=io.StringIO()))
    train(tiny_dataset, tmp_path / "run", tiny_act(), tiny_train(steps=6, log_every=5, val_every=6), [bar])
    assert seen == [1, 2, 3, 4, 5, 6]  # not only at the log interval (step 5)
