"""Checkpoint hardening: pickled code is refused and never run; foreign, truncated, corrupt and
hostile checkpoints give one clear CheckpointError (which keys differ, not a state-dict dump)."""

from __future__ import annotations

import os
import pickle
import random
import subprocess
import sys
import zipfile

import pytest
import torch

from robustnic.codecs import load_codec
from robustnic.codecs.architectures import get_architecture
from robustnic.codecs.checkpoint import (
    check_coder_tables,
    extract_state_dict,
    load_into,
    read_checkpoint_file,
    read_state_dict,
    save_checkpoint,
)
from robustnic.codecs.zoo import load_checkpoint_codec
from robustnic.errors import CheckpointError
from tests.conftest import tiny_codec


class RunsCode:
    """Unpickling this calls os.system: it creates ``marker`` if the loader executes pickled code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def state_dict():
    return tiny_codec().net.state_dict()


@pytest.fixture
def good_file(tmp_path, state_dict):
    path = tmp_path / "good.pth.tar"
    save_checkpoint({"state_dict": state_dict, "epoch": 3}, path)
    return path


def _evil_files(tmp_path, state_dict):
    marker = tmp_path / "PWNED"
    evil = {"state_dict": state_dict, "payload": RunsCode(marker)}
    files = {}
    files["zip"] = tmp_path / "evil_zip.pth.tar"
    torch.save(evil, files["zip"])
    files["legacy"] = tmp_path / "evil_legacy.pth"
    torch.save(evil, files["legacy"], _use_new_zipfile_serialization=False)
    files["raw-pickle"] = tmp_path / "evil_raw.pt"
    files["raw-pickle"].write_bytes(pickle.dumps(evil))
    files["bare"] = tmp_path / "evil_bare.ckpt"
    torch.save(RunsCode(marker), files["bare"])
    return marker, files


def test_pickled_code_is_refused_and_never_executed(tmp_path, state_dict):
    marker, files = _evil_files(tmp_path, state_dict)
    for kind, path in files.items():
        with pytest.raises(CheckpointError, match="refused|not a readable") as info:
            read_checkpoint_file(path)
        assert "\n" not in str(info.value) and len(str(info.value)) < 600, kind
        with pytest.raises(CheckpointError):
            load_codec(str(path))
        assert not marker.exists(), f"{kind}: the pickled os.system call was executed"
    # the marker mechanism itself works: a plain unpickle does run it
    pickle.loads(pickle.dumps(RunsCode(marker)))
    assert marker.exists()


def test_pickled_code_through_the_cli_is_one_line_and_not_executed(tmp_path, state_dict, photo):
    from robustnic.data.images import save_image

    marker, files = _evil_files(tmp_path, state_dict)
    save_image(photo, tmp_path / "in.png")
    script = (
        "import sys; from robustnic.cli.main import main\n"
        "for path in sys.argv[2:]:\n"
        "    rc = main(['compress', sys.argv[1], '-o', path + '.rnic', '--model', path])\n"
        "    print('RC', rc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "in.png"), *map(str, files.values())],
                          capture_output=True, text=True, timeout=120)
    assert proc.stdout.split() == ["RC", "2"] * len(files), proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == len(files) and all(line.startswith("robustnic compress: error:") for line in lines)
    assert not marker.exists() and not list(tmp_path.glob("*.rnic"))


def test_another_architecture_or_width_names_the_keys(tmp_path, state_dict, good_file):
    # the right file under the wrong architecture name
    with pytest.raises(CheckpointError) as info:
        load_codec(f"mbt2018-mean@{good_file}")
    message = str(info.value)
    assert "different shape" in message and "h_s." in message and len(message) < 800 and "\n" not in message
    with pytest.raises(CheckpointError, match="missing|unexpected"):
        load_codec(f"bmshj2018-factorized@{good_file}")
    # another width
    wide = get_architecture("bmshj2018-hyperprior").build(16, 16)
    with pytest.raises(CheckpointError) as info:
        load_into(wide, state_dict, "tiny.pth")
    message = str(info.value)
    assert "52 different shape" in message and "checkpoint (8, 3, 1) vs model (16, 3, 1)" in message
    assert "more)" in message and len(message) < 800  # summarised, not dumped
    # the file alone: architecture and widths are inferred and it loads
    assert load_checkpoint_codec(good_file).net.g_a[0].weight.shape[0] == 8


def test_unreadable_files(tmp_path, good_file):
    data = good_file.read_bytes()
    cases = {
        "empty.pth": b"",
        "text.pth": b"this is not a checkpoint\n" * 20,
        "random.pth": random.Random(0).randbytes(4096),
        "zeros.pth": bytes(4096),
        "png.pth": b"\x89PNG\r\n\x1a\n" + bytes(100),
    }
    cases.update({f"cut{n}.pth": data[: len(data) * n // 10] for n in (1, 3, 5, 7, 9)})
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError) as info:
            read_state_dict(tmp_path / name)
        assert "\n" not in str(info.value), name
    with zipfile.ZipFile(tmp_path / "foreign.zip", "w") as z:
        z.writestr("hello.txt", "not torch")
    for path in (tmp_path / "foreign.zip", tmp_path / "missing.pth", tmp_path):
        with pytest.raises(CheckpointError):
            read_state_dict(path)


def test_bit_flipped_checkpoints_load_or_raise_checkpoint_error(tmp_path, good_file):
    """Any single corrupted byte: CheckpointError, or a state dict that passes every check."""
    data = good_file.read_bytes()
    rng = random.Random(0)
    outcomes = {"refused": 0, "loaded": 0}
    for i in range(30):
        corrupt = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            corrupt[rng.randrange(len(corrupt))] = rng.randrange(256)
        path = tmp_path / f"flip{i}.pth"
        path.write_bytes(bytes(corrupt))
        try:
            codec = load_checkpoint_codec(path)
        except CheckpointError as exc:
            assert "\n" not in str(exc)
            outcomes["refused"] += 1
        else:
            outcomes["loaded"] += 1
            assert codec.net is not None
    assert outcomes["refused"] > 0


def test_hostile_tensors_in_a_state_dict_are_refused(state_dict):
    def variant(**changes):
        sd = dict(state_dict)
        sd.update(changes)
        return sd

    w = state_dict["g_a.0.weight"].clone()
    w[0, 0, 0, 0] = float("nan")
    with pytest.raises(CheckpointError, match="NaN or Inf.*g_a.0.weight"):
        extract_state_dict(variant(**{"g_a.0.weight": w}))
    prefix = "gaussian_conditional."
    cdf, lengths = state_dict[prefix + "_quantized_cdf"], state_dict[prefix + "_cdf_length"]
    hostile = {
        "length beyond the row": {prefix + "_cdf_length": lengths + cdf.shape[1]},
        "zero-probability symbol": {prefix + "_quantized_cdf": torch.cat([cdf[:, :1], cdf[:, :-1]], 1)},
        "cdf not ending at 2**16": {prefix + "_quantized_cdf": cdf // 2},
        "missing rows": {prefix + "_quantized_cdf": cdf[:-1]},
        "float table": {prefix + "_quantized_cdf": cdf.float()},
    }
    for what, change in hostile.items():
        with pytest.raises(CheckpointError, match="entropy coder table"):
            check_coder_tables(variant(**change), what)
    with pytest.raises(CheckpointError, match="keys must be strings"):
        extract_state_dict({1: torch.zeros(1)})
    with pytest.raises(CheckpointError, match="no state dict of tensors"):
        extract_state_dict({"state_dict": {"a": 1}})


def test_hostile_coder_tables_never_reach_the_native_coder(tmp_path, state_dict, photo):
    """A checkpoint whose CDF lengths point past its tables is refused before any coding."""
    sd = dict(state_dict)
    sd["entropy_bottleneck._cdf_length"] = sd["entropy_bottleneck._cdf_length"] + 10_000
    path = tmp_path / "hostile_tables.pth.tar"
    save_checkpoint({"state_dict": sd}, path)
    with pytest.raises(CheckpointError, match="entropy coder table"):
        load_codec(str(path)).compress(photo)


def test_round_trip_through_save_checkpoint_keeps_the_model(tmp_path, photo):
    codec = tiny_codec("mbt2018-mean", seed=3)
    save_checkpoint({"state_dict": codec.net.state_dict()}, tmp_path / "m.pth.tar")
    again = load_codec(f"mbt2018-mean@{tmp_path / 'm.pth.tar'}")
    assert again.compress(photo) == codec.compress(photo)
