"""Atomic outputs: a file robustnic writes appears whole or not at all, even when the process is
killed with SIGKILL in the middle of writing it; the temporary file left behind is hidden
(``.NAME.XXXX.part``) and never taken for a result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from robustnic.codecs.checkpoint import read_state_dict, save_checkpoint
from robustnic.data.images import image_paths, load_image, save_image
from robustnic.utils.io import atomic_path, atomic_write_bytes, atomic_write_text

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")

SLOW_WRITER = r"""
import sys, time
from robustnic.utils.io import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    with open(tmp, "wb") as f:
        for i in range(100000):
            f.write(bytes([i % 251]) * (1 << 20))
            f.flush()
            if i == 3:
                print("halfway", flush=True)
            time.sleep(0.005)
"""

REAL_WRITERS = r"""
import json, sys, torch
from pathlib import Path
from robustnic.codecs.checkpoint import save_checkpoint
from robustnic.data.images import save_image
from robustnic.utils.io import atomic_write_text
out = Path(sys.argv[1])
g = torch.Generator().manual_seed(0)
image = torch.rand(1, 3, 384, 512, generator=g)
weights = {"state_dict": {"w": torch.rand(2_000_000, generator=g)}}
print("ready", flush=True)
for i in range(1000):
    save_image(image if i % 2 else image.flip(-1), out / "image.png")
    atomic_write_text(out / "results.json", json.dumps({"i": i, "rows": list(range(100_000))}))
    save_checkpoint(weights, out / "model.pth.tar")
"""


def hidden_leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".part"))


def visible(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def _start(script: str, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)], stdout=subprocess.PIPE, text=True)


@pytest.mark.parametrize("old", [None, b"old complete content\n"])
def test_sigkill_in_the_middle_of_a_large_write(tmp_path, old):
    target = tmp_path / "result.png"
    if old is not None:
        target.write_bytes(old)
    proc = _start(SLOW_WRITER, target)
    try:
        assert proc.stdout.readline().strip() == "halfway"
        leftovers = hidden_leftovers(tmp_path)
        assert len(leftovers) == 1 and (tmp_path / leftovers[0]).stat().st_size >= 4 << 20
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    if old is None:
        assert not target.exists()
    else:
        assert target.read_bytes() == old
    assert visible(tmp_path) == ([] if old is None else ["result.png"])
    if old is None:
        with pytest.raises(Exception):
            image_paths(tmp_path)  # the hidden .part file is not an image file
    else:
        assert image_paths(tmp_path) == [target]


def test_sigkill_at_random_moments_of_real_writers(tmp_path):
    """Images, JSON and checkpoints written in a loop, killed: every file present is whole."""
    for delay in (1.3,):
        proc = _start(REAL_WRITERS, tmp_path)
        try:
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(delay)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait(timeout=60)
        for name in visible(tmp_path):
            path = tmp_path / name
            if name == "image.png":
                assert load_image(path).shape == (1, 3, 384, 512)
            elif name == "results.json":
                assert len(json.loads(path.read_text())["rows"]) == 100_000
            else:
                assert name == "model.pth.tar" and read_state_dict(path)["w"].numel() == 2_000_000
        assert all(n.endswith(".part") for n in hidden_leftovers(tmp_path))


def test_an_exception_mid_write_leaves_the_target_untouched(tmp_path):
    target = tmp_path / "out.json"
    atomic_write_text(target, '{"v": 1}')
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"v": 2, "half')
            raise RuntimeError("disk full")
    assert target.read_text() == '{"v": 1}' and visible(tmp_path) == ["out.json"] and not hidden_leftovers(tmp_path)
    with pytest.raises(Exception):
        save_image(torch.rand(1, 5, 4, 4), tmp_path / "bad.png")  # 5 channels: Pillow refuses
    with pytest.raises(Exception):
        save_checkpoint({"f": lambda: 0}, tmp_path / "bad.pth")  # torch.save cannot pickle a lambda
    assert visible(tmp_path) == ["out.json"] and not hidden_leftovers(tmp_path)
    atomic_write_bytes(tmp_path / "new" / "deep" / "x.bin", b"abc")
    assert (tmp_path / "new" / "deep" / "x.bin").read_bytes() == b"abc"
