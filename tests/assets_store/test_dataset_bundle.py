"""Dataset manifests, incremental statistics and policy bundles (assets_store contracts)."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from assets_store import BundleIntegrityError, EpisodeReader, SessionIndex
from assets_store.bundle import copy_bundle, seal_bundle, verify_bundle
from assets_store.dataset import build_manifest, episode_content_hash, load_dataset, write_dataset
from assets_store.layout import TMP_PREFIX, host_tag
from assets_store.stats import PartialStats, dataset_stats, episode_partial_stats
from assets_store.synthetic import write_synthetic_episode
from pipeline.cli.app import build_app


def test_partial_stats_merge_equals_full_computation():
    rng = np.random.default_rng(0)
    parts = [rng.normal(i, 1 + i, size=(20 + 7 * i, 5)) for i in range(4)]
    merged = PartialStats.of(parts[0])
    for p in parts[1:]:
        merged = merged.merge(PartialStats.of(p))
    full = np.concatenate(parts)
    s = merged.finalize()
    np.testing.assert_allclose(s.mean, full.mean(0), rtol=1e-12)
    np.testing.assert_allclose(s.std, full.std(0), rtol=1e-9)
    np.testing.assert_array_equal(s.min, full.min(0))
    assert s.count == len(full)
    # round trip through JSON, and the std floor for a joint that never moves
    again = PartialStats.from_dict(json.loads(json.dumps(merged.to_dict())))
    np.testing.assert_array_equal(again.sum, merged.sum)
    const = PartialStats.of(np.ones((10, 2))).finalize(std_floor=1e-2)
    np.testing.assert_array_equal(const.std, [1e-2, 1e-2])
    x = np.array([3.0, -1.0])
    np.testing.assert_allclose(const.unnormalize(const.normalize(x)), x)


def test_manifest_id_is_content_addressed(layout):
    paths = [write_synthetic_episode(layout, "a", steps=5 + i, seed=i) for i in range(5)]
    entries = [("a", p.name, episode_content_hash(p), 5 + i) for i, p in enumerate(paths)]
    m1 = build_manifest(entries, val_fraction=0.2, fps=50.0)
    m2 = build_manifest(list(reversed(entries)), val_fraction=0.2, fps=50.0)
    assert m1.id == m2.id and len(m1.val) == 1 and len(m1.train) == 4
    m3 = build_manifest(entries[:4], val_fraction=0.2, fps=50.0)
    assert m3.id != m1.id
    changed = list(entries)
    changed[0] = (*changed[0][:2], "0" * 64, changed[0][3])
    assert build_manifest(changed, val_fraction=0.2, fps=50.0).id != m1.id

    partials = [episode_partial_stats(EpisodeReader(p).qpos, EpisodeReader(p).action) for p in paths]
    stats = dataset_stats(partials)
    out = write_dataset(layout, m1, stats)
    assert out.name == m1.id
    manifest, loaded = load_dataset(out)
    assert manifest.id == m1.id and [e.key for e in manifest.episodes] == [e.key for e in m1.episodes]
    np.testing.assert_allclose(loaded["qpos"].mean, stats["qpos"].mean)
    all_qpos = np.concatenate([EpisodeReader(p).qpos for p in paths]).astype(np.float64)
    np.testing.assert_allclose(loaded["qpos"].mean, all_qpos.mean(0), rtol=1e-6, atol=1e-7)


def test_content_hash_changes_with_content(layout):
    p = write_synthetic_episode(layout, "a", steps=5)
    h = episode_content_hash(p)
    assert h == episode_content_hash(p)
    chunk = p / "observations/images/top/c/2/0/0/0"
    chunk.write_bytes(chunk.read_bytes() + b"\0")
    assert episode_content_hash(p) != h


def _bundle(tmp_path):
    b = tmp_path / "bundle"
    b.mkdir()
    (b / "model.safetensors").write_bytes(b"weights")
    (b / "config.json").write_text("{}")
    (b / "stats.json").write_text("{}")
    return b


def test_bundle_seal_verify_copy(tmp_path):
    b = _bundle(tmp_path)
    manifest = seal_bundle(b, dataset_id="abc", mlflow_run_id="r1", metrics={"success_rate": 0.9})
    assert set(manifest["files"]) == {"model.safetensors", "config.json", "stats.json"}
    assert verify_bundle(b)["dataset_id"] == "abc"
    copy = tmp_path / "deploy" / "policy"
    copy_bundle(b, copy)
    assert verify_bundle(copy)["metrics"] == {"success_rate": 0.9}
    (copy / "model.safetensors").write_bytes(b"tampered")
    with pytest.raises(BundleIntegrityError, match=r"model.safetensors: sha256 mismatch"):
        verify_bundle(copy)
    (copy / "model.safetensors").write_bytes(b"weights")
    (copy / "extra.pkl").write_bytes(b"surprise")
    with pytest.raises(BundleIntegrityError, match=r"files not in the manifest: \['extra.pkl'\]"):
        verify_bundle(copy)
    (copy / "extra.pkl").unlink()
    (copy / "stats.json").unlink()
    with pytest.raises(BundleIntegrityError, match="stats.json: listed in the manifest but missing"):
        verify_bundle(copy)
    with pytest.raises(BundleIntegrityError, match="missing; not a policy bundle"):
        verify_bundle(tmp_path)
    # a failed copy leaves the destination as it was
    with pytest.raises(BundleIntegrityError):
        copy_bundle(copy, tmp_path / "deploy" / "other")
    assert not (tmp_path / "deploy" / "other").exists()


def test_doctor_cli_reports_what_it_did(layout):
    write_synthetic_episode(layout, "s", steps=3)
    stale = layout.session_dir("s") / f"{TMP_PREFIX}episode_000001.zarr.{host_tag()}.999999999.ab"
    stale.mkdir()
    res = CliRunner().invoke(build_app(), ["episodes", "doctor"])
    assert res.exit_code == 0, res.output
    assert "removed:" in res.output and "partial episode of a crashed writer" in res.output
    assert "session 's' is not finalized" in res.output
    assert not stale.exists()
    assert [e.name for e in SessionIndex(layout, "s").episodes()] == ["episode_000000.zarr"]
    res = CliRunner().invoke(build_app(), ["episodes", "doctor"])
    assert "nothing to repair" in res.output
