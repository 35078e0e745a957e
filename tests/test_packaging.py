"""The path a user takes: an sdist and a wheel built from a clean copy of the tree carry the model zoo,
and the installed wheel codes an image from outside the source tree.

"Clean copy" means the files git tracks (``git ls-files``), as they are in the working tree: edits to
tracked files count, untracked and ignored files (build outputs, ``runs/``, a model file nobody has
``git add``-ed yet) do not, so the test checks what a commit would ship. In the default suite (CI runs
it); about half a minute.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = "robustnic/weights/"
#: What the model card and the zoo need besides the model files.
ZOO_FILES = ("manifest.json", "classical.json", "README.md", "rd.png")
MIN_MODELS = 10


def tracked_files(root: Path) -> list[str]:
    """Paths git tracks under ``root`` that exist in the working tree (skip if not a git checkout)."""
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout: the clean copy is defined by git's tracked files")
    out = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True).stdout
    return [p for p in out.decode().split("\0") if p and (root / p).is_file()]


def clean_copy(root: Path, dst: Path) -> Path:
    """Copy the tracked files of ``root`` into ``dst`` (keeping their paths); returns ``dst``."""
    for rel in tracked_files(root):
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, dst / rel)
    return dst


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run ``cmd``; fail the test with its output if it fails."""
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc.stdout


def check_zoo(names: list[str], prefix: str, what: str) -> None:
    """``names`` (archive members) hold every manifest model, the zoo's files and >= MIN_MODELS models."""
    inside = {n[len(prefix):] for n in names if n.startswith(prefix)}
    models = sorted(n for n in inside if n.endswith(".pt"))
    assert len(models) >= MIN_MODELS, f"{what} carries {len(models)} model files: {models}"
    missing = [f for f in ZOO_FILES if f not in inside]
    assert not missing, f"{what} lacks {missing}"
    manifest = json.loads((ROOT / "src" / WEIGHTS / "manifest.json").read_text())
    unshipped = [row["file"] for row in manifest["models"] if row["file"] not in inside]
    assert not unshipped, f"{what} lacks manifest models {unshipped} (tracked by git? see the package data globs)"


#: Runs in the installed copy: import from the target dir, code a photo with the default model, and
#: decode it again with the model the bitstream names.
USER_SCRIPT = r"""
import json, sys
import robustnic
from robustnic.codecs import DEFAULT_MODEL, load_codec
from robustnic.codecs.zoo import WEIGHTS_DIR, codec_for_bitstream
from robustnic.data import bundled_photos
from robustnic.metrics import psnr
x = bundled_photos(["astronaut"], crop=(64, 96))["astronaut"]
codec = load_codec(DEFAULT_MODEL)
data = codec.compress(x)
x_hat = codec_for_bitstream(data).decompress(data)
print(json.dumps({"file": robustnic.__file__, "weights": str(WEIGHTS_DIR), "bytes": len(data),
                  "psnr": psnr(x, x_hat), "shape": list(x_hat.shape)}))
"""


def test_wheel_from_clean_copy_carries_the_zoo_and_codes_an_image(tmp_path: Path) -> None:
    src = clean_copy(ROOT, tmp_path / "src")
    dist = tmp_path / "dist"
    # sdist first, then the wheel from the sdist (what `python -m build` does): checks both
    sdist_name = run(
        [sys.executable, "-c", "import sys, setuptools.build_meta as b; print(b.build_sdist(sys.argv[1]))", str(dist)],
        cwd=src,
    ).strip().splitlines()[-1]
    sdist = dist / sdist_name
    with tarfile.open(sdist) as tar:
        top = tar.getnames()[0].split("/")[0]
        check_zoo(tar.getnames(), f"{top}/src/{WEIGHTS}", "the sdist")
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist), str(sdist)],
        cwd=tmp_path)
    (wheel,) = dist.glob("robustnic-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        check_zoo(zf.namelist(), WEIGHTS, "the wheel")

    site = tmp_path / "site"
    run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
        cwd=tmp_path)
    away = tmp_path / "elsewhere"
    away.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("ROBUSTNIC_WEIGHTS", "PYTHONPATH")}
    env |= {"PYTHONPATH": str(site), "PYTHONNOUSERSITE": "1"}
    out = json.loads(run([sys.executable, "-c", USER_SCRIPT], cwd=away, env=env).strip().splitlines()[-1])
    assert Path(out["file"]).is_relative_to(site), f"imported {out['file']}, not the installed wheel"
    assert Path(out["weights"]).is_relative_to(site)
    assert not Path(out["file"]).is_relative_to(ROOT)
    assert out["shape"] == [1, 3, 64, 96] and out["bytes"] > 30
    assert out["psnr"] > 20, out
