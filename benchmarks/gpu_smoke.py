"""GPU smoke test: the same work on a CUDA device and on the CPU, compared in one table.

On each device it runs

1. **eval**: real round trips (compress -> bytes -> decompress) of the held-out photos, centre crops;
2. **attack**: the ``paper`` attack, 20 steps at ``psnr:40``, on two crops, verified on real bitstreams;
3. **fine-tuning**: 5 steps of adversarial fine-tuning of the model (bundled photos as training
   images), then its validation (run on the CPU in both cases: it measures the trained weights);
4. **grid**: a 2-job benchmark grid (one ``rd`` job, one ``attack`` job) through ``run_grid``;

and prints each quantity on the CPU and on the GPU, their difference, the tolerance and whether it
holds. What must hold:

* **entropy coder: bits identical.** The streams written on the GPU are byte for byte the CPU's
  (same quantised latents, same entropy parameters), and every CPU stream decodes on the GPU to
  the CPU's image (to within one 8-bit level: the synthesis transform's float rounding);
* **PSNR within tolerance**: plain coding (eval, grid ``rd``) within 0.01 dB; attacks within 0.5 dB
  (float differences take the two optimisations along different paths); fine-tuning's validation
  within 0.1 dB after 5 steps.

Exit status 0 when every check holds, 1 otherwise. On a machine without CUDA it prints one line and
exits 0. ``--device cpu`` runs the whole comparison CPU against CPU (a dry run of this script).
cuDNN's TF32 convolutions (on by default on Ampere and later) are reported in the header;
``--tf32 off`` turns them off for the run.

    .venv/bin/python benchmarks/gpu_smoke.py                       # cuda vs cpu, hyperprior-small:q3, 256 px
    .venv/bin/python benchmarks/gpu_smoke.py --device cpu --crop 64   # dry run without a GPU
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit deprecation notes from compressai

import torch  # noqa: E402

from robustnic.attacks import make_attack, parse_budget, verify_attack  # noqa: E402
from robustnic.codecs import DEFAULT_MODEL, load_codec  # noqa: E402
from robustnic.data.images import save_image  # noqa: E402
from robustnic.data.photos import bundled_photos  # noqa: E402
from robustnic.training.finetune import FinetuneConfig, finetune  # noqa: E402
from robustnic.metrics import psnr  # noqa: E402
from robustnic.studies.grid import expand_spec, run_grid  # noqa: E402
from robustnic.studies.store import ResultStore  # noqa: E402
from robustnic.utils.runtime import resolve_device  # noqa: E402

#: Tolerances (dB) for PSNR differences between the devices.
CODING_DB = 0.01
ATTACK_DB = 0.5
FINETUNE_DB = 0.1
#: Largest difference (8-bit levels) between a CPU stream decoded on the CPU and on the GPU.
DECODE_LEVELS = 1
ATTACK_STEPS, FINETUNE_STEPS = 20, 5


def _mean(values) -> float:
    values = [float(v) for v in values]
    return sum(values) / len(values) if values else math.nan


def run_eval(model: str, device: torch.device, images: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Real round trips of every image: streams, payload bits, mean PSNR, seconds."""
    codec = load_codec(model, device)
    t0 = time.perf_counter()
    streams, bits, db = {}, 0, []
    for name, x in images.items():
        coded = codec.roundtrip(x)
        streams[name], bits = coded.data, bits + coded.payload_bits
        db.append(psnr(x, coded.x_hat))
    return {"codec": codec, "streams": streams, "bits": bits, "psnr": _mean(db), "time": time.perf_counter() - t0}


def run_attack(model: str, device: torch.device, x: torch.Tensor) -> dict[str, Any]:
    """A 20-step paper attack at psnr:40 on the batch ``x``, verified on real bitstreams."""
    codec = load_codec(model, device)
    t0 = time.perf_counter()
    atk = make_attack("paper", codec, budget=parse_budget("psnr:40"), steps=ATTACK_STEPS, seed=0)
    rows = verify_attack(codec, x, atk(x), budget=atk.budget)
    return {"psnr-in": _mean(r["psnr-in"] for r in rows), "psnr-out": _mean(r["psnr-out"] for r in rows),
            "budget-ok": sum(bool(r["budget-ok"]) for r in rows), "n": len(rows), "time": time.perf_counter() - t0}


def run_finetune(model: str, device: torch.device, train_dir: Path, out: Path) -> dict[str, Any]:
    """5 steps of adversarial fine-tuning; the last training loss and the validation that follows."""
    cfg = FinetuneConfig(model=model, steps=FINETUNE_STEPS, batch_size=2, patch_size=128, images=[str(train_dir)],
                         val_every=FINETUNE_STEPS, checkpoint_every=FINETUNE_STEPS, val_attack_steps=5,
                         threads=None, seed=0)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the trainer prints each validation as a JSON line
        result = finetune(cfg, out, device=device, progress=False)
    last = result["history"][-1]
    return {"loss": last["train"]["loss"], "val-psnr": last["val"]["psnr-rgb"], "val-bpp": last["val"]["bpp"],
            "val-attacked": last["val"]["psnr-attacked"], "time": time.perf_counter() - t0}


def run_two_job_grid(model: str, device: torch.device, crop: int, store: Path) -> dict[str, Any]:
    """One rd job and one attack job through ``run_grid``; their stored results."""
    spec = {"seed": 0, "crop": crop, "images": ["bundled:coffee"], "study": [
        {"kind": "rd", "models": [model]},
        {"kind": "attack", "models": [model], "attacks": ["paper"], "budgets": ["psnr:40"], "steps": 5},
    ]}
    jobs = expand_spec(spec)
    assert len(jobs) == 2, [j.describe() for j in jobs]
    t0 = time.perf_counter()
    summary = run_grid(jobs, store, device=str(device), progress=False)
    if summary.failed:
        raise RuntimeError(f"grid jobs failed on {device}: {summary.failed}")
    with ResultStore(store, readonly=True) as results:
        rows = {r.kind: r.result for r in results.rows()}
    return {"rd-bpp": rows["rd"]["bpp"], "rd-psnr": rows["rd"]["psnr-rgb"], "attack-psnr-out": rows["attack"]["psnr-out"],
            "time": time.perf_counter() - t0}


def cross_decode(cpu: dict, gpu: dict) -> tuple[int, float]:
    """Decode every CPU stream with the GPU codec: images decoded, largest difference in 8-bit levels."""
    worst, decoded = 0.0, 0
    for data in cpu["streams"].values():
        ref = cpu["codec"].decompress(data)
        try:
            other = gpu["codec"].decompress(data).cpu()
        except Exception:  # a stream that does not decode on the GPU counts as failed
            worst = math.inf
            continue
        decoded += 1
        worst = max(worst, float((ref.mul(255).round() - other.mul(255).round()).abs().max()))
    return decoded, worst


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="the device compared with the CPU (default cuda; cpu: a dry run)")
    p.add_argument("--model", "-m", default=DEFAULT_MODEL, help=f"learned codec spec (default {DEFAULT_MODEL})")
    p.add_argument("--crop", type=int, default=256, help="centre crop of the photos (default 256)")
    p.add_argument("--tf32", choices=["default", "off"], default="default", help="cuDNN/matmul TF32 (default: torch's)")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"gpu_smoke: no CUDA device on this machine (torch {torch.__version__}); nothing to compare")
        return 0
    device = resolve_device(args.device)
    if args.tf32 == "off":
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    gpu_name = torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)
    print(f"# gpu_smoke: {args.model}, {args.crop}px crops; cpu vs {device} ({gpu_name}); torch {torch.__version__}, "
          f"python {platform.python_version()}; cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}, "
          f"matmul.allow_tf32={torch.backends.cuda.matmul.allow_tf32}\n")
    images = bundled_photos(crop=args.crop)
    pair = torch.cat([images["coffee"], images["chelsea"]])
    with tempfile.TemporaryDirectory(prefix="gpu-smoke-") as tmp:
        work = Path(tmp)
        for name, x in bundled_photos().items():  # whole photos: training patches for the fine-tuning steps
            save_image(x, work / "train" / f"{name}.png")
        runs: dict[str, dict[str, dict]] = {}
        for label, dev in (("cpu", torch.device("cpu")), ("gpu", device)):
            runs[label] = {
                "eval": run_eval(args.model, dev, images),
                "attack": run_attack(args.model, dev, pair),
                "finetune": run_finetune(args.model, dev, work / "train", work / f"finetune-{label}"),
                "grid": run_two_job_grid(args.model, dev, args.crop, work / f"grid-{label}.sqlite"),
            }
        cpu, gpu = runs["cpu"], runs["gpu"]
        decoded, worst = cross_decode(cpu["eval"], gpu["eval"])

    same = sum(cpu["eval"]["streams"][n] == gpu["eval"]["streams"][n] for n in images)
    rows: list[tuple[str, Any, Any, Any, str, bool]] = [
        ("eval: streams identical", "-", f"{same}/{len(images)}", "-", "all", same == len(images)),
        ("eval: payload bits", cpu["eval"]["bits"], gpu["eval"]["bits"], abs(cpu["eval"]["bits"] - gpu["eval"]["bits"]),
         "0", cpu["eval"]["bits"] == gpu["eval"]["bits"]),
        ("eval: CPU streams decoded on GPU", "-", f"{decoded}/{len(images)}", f"{worst:g} levels",
         f"<= {DECODE_LEVELS} level", decoded == len(images) and worst <= DECODE_LEVELS),
    ]

    def db(label: str, a: float, b: float, tol: float) -> None:
        rows.append((label, f"{a:.3f}", f"{b:.3f}", f"{abs(a - b):.3f}", f"<= {tol:g} dB", abs(a - b) <= tol))

    db("eval: PSNR (dB)", cpu["eval"]["psnr"], gpu["eval"]["psnr"], CODING_DB)
    db(f"attack paper x{ATTACK_STEPS} psnr:40: PSNR in", cpu["attack"]["psnr-in"], gpu["attack"]["psnr-in"], ATTACK_DB)
    db(f"attack paper x{ATTACK_STEPS} psnr:40: PSNR out", cpu["attack"]["psnr-out"], gpu["attack"]["psnr-out"], ATTACK_DB)
    rows.append(("attack: budget holds", f"{cpu['attack']['budget-ok']}/{cpu['attack']['n']}",
                 f"{gpu['attack']['budget-ok']}/{gpu['attack']['n']}", "-", "all",
                 gpu["attack"]["budget-ok"] == gpu["attack"]["n"] == cpu["attack"]["budget-ok"]))
    rows.append((f"finetune x{FINETUNE_STEPS}: train loss", f"{cpu['finetune']['loss']:.4f}",
                 f"{gpu['finetune']['loss']:.4f}", f"{abs(cpu['finetune']['loss'] - gpu['finetune']['loss']):.4f}",
                 "(reported)", True))
    db(f"finetune x{FINETUNE_STEPS}: val PSNR (dB)", cpu["finetune"]["val-psnr"], gpu["finetune"]["val-psnr"], FINETUNE_DB)
    db(f"finetune x{FINETUNE_STEPS}: val attacked PSNR", cpu["finetune"]["val-attacked"],
       gpu["finetune"]["val-attacked"], ATTACK_DB)
    rows.append(("grid rd: bpp", f"{cpu['grid']['rd-bpp']:.5f}", f"{gpu['grid']['rd-bpp']:.5f}",
                 f"{abs(cpu['grid']['rd-bpp'] - gpu['grid']['rd-bpp']):.5f}", "0 (bits identical)",
                 cpu["grid"]["rd-bpp"] == gpu["grid"]["rd-bpp"]))
    db("grid rd: PSNR (dB)", cpu["grid"]["rd-psnr"], gpu["grid"]["rd-psnr"], CODING_DB)
    db("grid attack x5: PSNR out (dB)", cpu["grid"]["attack-psnr-out"], gpu["grid"]["attack-psnr-out"], ATTACK_DB)
    for part in ("eval", "attack", "finetune", "grid"):
        rows.append((f"time: {part} (s)", f"{cpu[part]['time']:.2f}", f"{gpu[part]['time']:.2f}",
                     f"x{cpu[part]['time'] / max(gpu[part]['time'], 1e-9):.1f}", "(speed-up)", True))

    print(f"| check | cpu | {device} | difference | tolerance | ok |")
    print("|---|---|---|---|---|---|")
    for label, a, b, diff, tol, ok in rows:
        print(f"| {label} | {a} | {b} | {diff} | {tol} | {'yes' if ok else 'NO'} |")
    failed = [r[0] for r in rows if not r[5]]
    print(f"\n{'all checks hold' if not failed else 'FAILED: ' + '; '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
