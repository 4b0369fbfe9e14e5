"""Fixtures for the model tests: a tiny recorded dataset (EpisodeWriter -> manifest + stats)."""

from __future__ import annotations

import pytest
import torch

from model_kit import make_dataset


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    torch.set_num_threads(1)  # tiny models: threads cost more than they give, and the cores are shared
    return make_dataset(tmp_path_factory.mktemp("store"))
