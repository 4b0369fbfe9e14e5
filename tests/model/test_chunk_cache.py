"""The node-local chunk cache (model.data.ChunkCache): one bound for the directory, however many processes fill it."""

from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path

from model.config import TrainConfig
from model.data import ChunkCache, EpisodeSource

CHUNK = 1000
BOUND = 20 * CHUNK


def _chunks_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.iterdir() if not p.name.startswith("."))


def _fill(directory: str, worker: int, barrier) -> None:
    cache = ChunkCache(directory, BOUND)  # opened (and the directory indexed) before either writes
    barrier.wait()
    for i in range(3 * BOUND // CHUNK):
        cache.get(f"{worker}/{i}", lambda: bytes([worker]) * CHUNK)


def test_two_processes_filling_one_cache_directory_stay_within_its_bound(tmp_path):
    directory = tmp_path / "cache"
    ctx = mp.get_context("fork")  # as DataLoader workers are started
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_fill, args=(str(directory), w, barrier)) for w in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    held = _chunks_bytes(directory)
    assert 0 < held <= BOUND  # each process bounding only its own additions left up to twice the bound
    assert ChunkCache(directory, BOUND).total_bytes == held  # the shared count agrees with the directory


def test_a_hit_is_served_from_the_directory_and_kept_over_older_chunks(tmp_path):
    cache = ChunkCache(tmp_path, 3 * CHUNK)
    fetched = []

    def fetch(tag: bytes):
        fetched.append(tag)
        return tag * CHUNK

    for tag in (b"a", b"b", b"c"):
        cache.get(tag.decode(), lambda tag=tag: fetch(tag))
    os.utime(tmp_path / next(p.name for p in tmp_path.iterdir() if p.read_bytes() == b"a" * CHUNK), (0, 0))
    os.utime(tmp_path / next(p.name for p in tmp_path.iterdir() if p.read_bytes() == b"b" * CHUNK), (1, 1))
    assert cache.get("b", lambda: fetch(b"x")) == b"b" * CHUNK  # a hit: read again, so now the newest
    cache.get("d", lambda: fetch(b"d"))  # over the bound: the least recently read ("a") goes
    assert fetched == [b"a", b"b", b"c", b"d"] and (cache.hits, cache.misses) == (1, 4)
    held = {p.read_bytes()[:1] for p in tmp_path.iterdir() if not p.name.startswith(".")}
    assert b"a" not in held and b"b" in held and _chunks_bytes(tmp_path) <= 3 * CHUNK
    assert ChunkCache(tmp_path, CHUNK).total_bytes <= CHUNK  # a smaller bound applies when the cache is opened


def test_the_training_config_names_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ALOHA_CHUNK_CACHE", str(tmp_path / "env"))
    monkeypatch.setenv("ALOHA_CHUNK_CACHE_BYTES", "5000")
    cfg = TrainConfig()
    assert (cfg.chunk_cache_dir, cfg.chunk_cache_bytes) == (None, None)  # off unless set, as before
    env = EpisodeSource.from_env()
    assert env.with_cache(cfg.chunk_cache_dir, cfg.chunk_cache_bytes) == env
    cfg = TrainConfig(chunk_cache_dir=str(tmp_path / "cfg"), chunk_cache_bytes=7000)
    chosen = env.with_cache(cfg.chunk_cache_dir, cfg.chunk_cache_bytes)
    assert (chosen.cache_dir, chosen.cache_bytes) == (tmp_path / "cfg", 7000)
    assert "whole node" in TrainConfig.model_fields["chunk_cache_bytes"].description


def test_files_the_cache_did_not_write_are_never_counted_or_evicted(tmp_path):
    # a cache directory pointed at a folder that already holds a user's files: eviction touches only chunks
    (tmp_path / "notes.txt").write_bytes(b"n" * 5 * CHUNK)
    (tmp_path / "data").mkdir()
    (tmp_path / ("ab" * 32)).mkdir()  # a directory named like a chunk is not one
    cache = ChunkCache(tmp_path, 3 * CHUNK)
    for i in range(6):
        cache.get(str(i), lambda i=i: bytes([i]) * CHUNK)
    assert (tmp_path / "notes.txt").read_bytes() == b"n" * 5 * CHUNK
    assert (tmp_path / "data").is_dir() and (tmp_path / ("ab" * 32)).is_dir()
    assert cache.total_bytes <= 3 * CHUNK
