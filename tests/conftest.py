"""Shared fixtures: tiny random models and small crops of the bundled photos (seconds, CPU)."""

from __future__ import annotations

import warnings

import pytest
import torch

from robustnic.codecs import load_codec
from robustnic.data import bundled_photos

warnings.filterwarnings("ignore", category=FutureWarning)

TINY = "N=8:M=16:random"


@pytest.fixture(scope="session")
def photo() -> torch.Tensor:
    """A 64x96 crop of a held-out photo, (1, 3, 64, 96)."""
    return bundled_photos(["astronaut"], crop=(64, 96))["astronaut"]


@pytest.fixture(scope="session")
def odd_photo() -> torch.Tensor:
    """An odd-sized 45x71 crop (not divisible by 64)."""
    return bundled_photos(["coffee"], crop=(45, 71))["coffee"]


def tiny_codec(arch: str = "bmshj2018-hyperprior", seed: int = 0):
    """A randomly initialised tiny codec (N=8, M=16), deterministic under ``seed``."""
    torch.manual_seed(seed)
    return load_codec(f"{arch}:{TINY}")


@pytest.fixture(scope="module")
def one_thread():
    """Small tensors: one thread is faster than two fighting over a shared machine (use per module:
    ``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny():
    return tiny_codec()
