"""Clean rate-distortion evaluation from real bitstreams, with CompressAI ``eval_model``'s key names."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import torch
from tqdm.auto import tqdm

from robustnic.codecs.autoregressive import coded_likelihoods, is_autoregressive
from robustnic.codecs.base import Codec
from robustnic.codecs.learned import PAD_MULTIPLE, LearnedCodec
from robustnic.data.images import pad_to_multiple
from robustnic.metrics import HAARPSI_MIN_SIDE, PERCEPTUAL, VIF_MIN_SIDE, estimated_bpp, ms_ssim, ms_ssim_scales, psnr
from robustnic.utils.io import atomic_write_text
from robustnic.utils.tables import json_safe, mean_count, write_csv

#: Per-image keys, in CompressAI's ``eval_model`` vocabulary plus robustnic's extras: ``bpp`` counts the
#: entropy-coded payload, ``bpp-file`` the whole file with its header, ``bpp-estimated`` the model's
#: likelihood of the symbols its coder codes, ``bpp-forward`` the likelihood of CompressAI's forward pass
#: (what training minimises). The two estimates differ only for context models (mbt2018, cheng2020),
#: whose forward pass predicts from ``round(y)`` instead of the decoded latents
#: (:mod:`robustnic.codecs.autoregressive`). ``encoding_time`` / ``decoding_time`` mean what they mean in
#: ``eval_model``: the wall time of the model's ``compress`` / ``decompress`` on the padded tensor, with one
#: torch thread (``eval_model`` sets it on import); robustnic's container and checks are not counted.
#: ``vif``, ``gmsd`` and ``haarpsi`` are the reconstruction's perceptual metrics against the source
#: (:mod:`robustnic.metrics`; VIF and HaarPSI 1, GMSD 0 for a perfect reconstruction).
RD_KEYS = ("psnr-rgb", "ms-ssim-rgb", "bpp", "bpp-file", "bpp-estimated", "bpp-forward", "encoding_time",
           "decoding_time", "ms-ssim-scales", *PERCEPTUAL)


#: Torch threads while evaluating: CompressAI's ``eval_model`` runs everything with one. Metrics run with
#: it too: workers left spinning by a multi-threaded metric would slow the next timed round trip down.
EVAL_THREADS = 1


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` torch threads (None: leave the setting alone), then restore it."""
    old = torch.get_num_threads()
    if threads is not None and threads != old:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != old:
            torch.set_num_threads(old)


def evaluate_image(codec: Codec, x: torch.Tensor, threads: int | None = EVAL_THREADS) -> dict[str, float | None]:
    """Real round trip of one image: PSNR, MS-SSIM, VIF, GMSD, HaarPSI (8-bit), bpp (payload), file bpp,
    estimated bpp, times.

    Runs with ``threads`` torch threads (default 1, as ``eval_model``; None keeps torch's setting), so
    ``encoding_time`` / ``decoding_time`` compare with CompressAI's. The estimates are None for codecs
    without likelihoods (JPEG, WebP)."""
    with torch_threads(threads):
        return _evaluate_image(codec, x)


def _evaluate_image(codec: Codec, x: torch.Tensor) -> dict[str, float | None]:
    coded = codec.roundtrip(x)
    row: dict[str, float | None] = {
        "psnr-rgb": psnr(x, coded.x_hat),
        "ms-ssim-rgb": ms_ssim(x, coded.x_hat),
        "ms-ssim-scales": ms_ssim_scales(*x.shape[-2:]),
        "bpp": coded.bpp,
        "bpp-file": coded.bpp_file,
        "bpp-estimated": None,
        "bpp-forward": None,
        "encoding_time": coded.encode_time,
        "decoding_time": coded.decode_time,
    }
    row.update({name: fn(x, coded.x_hat) for name, fn in PERCEPTUAL.items()})
    pixels = x.shape[-2] * x.shape[-1]
    if codec.differentiable:
        with torch.no_grad():
            out = codec.forward(x.to(codec.device), standin="ste", rate=True)
        if out.likelihoods is not None:
            row["bpp-forward"] = row["bpp-estimated"] = float(estimated_bpp(out.likelihoods, pixels)[0])
    if isinstance(codec, LearnedCodec) and is_autoregressive(codec.net):
        xp, _ = pad_to_multiple(x.to(codec.device), PAD_MULTIPLE)
        row["bpp-estimated"] = float(estimated_bpp(coded_likelihoods(codec.net, xp).likelihoods, pixels)[0])
    return row


def mean_row(rows: Iterable[dict[str, float | None]]) -> dict[str, float | None]:
    """Mean of every key of the first row over rows, each key on its own, by
    :func:`robustnic.utils.tables.mean_count`'s rule (None, NaN and inf left out); None where no value
    entered (a codec without the estimate). Columns may average different images: ``eval``'s mean row
    uses :func:`common_mean_row`, which does not."""
    rows = list(rows)
    out: dict[str, float | None] = {}
    for key in rows[0] if rows else []:
        mean, count = mean_count(r.get(key) for r in rows)
        out[key] = mean if count else None
    return out


#: What each perceptual metric needs of an image's size (it is None on a smaller one).
_NEEDS = {"vif": f"{VIF_MIN_SIDE} px a side VIF", "gmsd": "3 px along one side GMSD",
          "haarpsi": f"{HAARPSI_MIN_SIDE} px a side HaarPSI"}


def _gap(row: dict[str, float | None], key: str) -> str:
    """Why ``row[key]`` cannot enter a mean, in a few words."""
    value = row.get(key)
    if key == "ms-ssim-rgb" and value is None and row.get("ms-ssim-scales") == 0:
        return "no ms-ssim-rgb (under the 11 px a side MS-SSIM needs)"
    if key in _NEEDS and value is None:
        return f"no {key} (under the {_NEEDS[key]} needs)"
    if value is None:
        return f"no {key}"
    return f"{key} is {value}"  # nan or inf (an identical reconstruction's PSNR)


def common_mean_row(
    per_image: Mapping[str, dict[str, float | None]],
) -> tuple[dict[str, float | None], dict[str, str]]:
    """Mean row over one image set for every column, and the images left out of it with the reason.

    The rule: a column *applies* when at least one image has a finite value in it; the mean of every
    column is over the images whose every applying column is finite, so bpp and MS-SSIM of a mean row
    always describe the same images. A column that applies to no image (the likelihood estimates of
    JPEG, MS-SSIM when every image is under 11 px) is None. An image left out (a 10x10 image without
    MS-SSIM, a 32-px crop without VIF beside larger images, an identical reconstruction's infinite
    PSNR) is named with the reason; when no image has
    every column, every mean is None.

    Returns ``(mean row, {image: reason})``."""
    rows = list(per_image.values())
    keys: list[str] = []
    for row in rows:
        keys.extend(k for k in row if k not in keys)
    applies = [k for k in keys if mean_count(r.get(k) for r in rows)[1]]
    left_out = {}
    for image, row in per_image.items():
        gaps = [_gap(row, k) for k in applies if not mean_count([row.get(k)])[1]]
        if gaps:
            left_out[image] = "; ".join(gaps)
    kept = [row for image, row in per_image.items() if image not in left_out]
    out: dict[str, float | None] = {k: None for k in keys}
    for key in applies:
        if kept:
            out[key] = mean_count(r.get(key) for r in kept)[0]
    return out, left_out


def evaluate_codec(
    codec: Codec, images: dict[str, torch.Tensor], progress: bool = True, threads: int | None = EVAL_THREADS
) -> dict:
    """Evaluate ``codec`` on named images.

    Returns ``{"name", "per_image": {img: row}, "results": mean row, "left_out": {img: reason}}``: the
    mean row is over one image set for every column (:func:`common_mean_row`), ``left_out`` names the
    images it leaves out and why. ``threads``: torch threads while evaluating (see :func:`evaluate_image`)."""
    per_image = {}
    with torch_threads(threads):
        for name, x in tqdm(images.items(), desc=f"eval {codec.name}", disable=not progress, leave=False):
            per_image[name] = _evaluate_image(codec, x)
    results, left_out = common_mean_row(per_image)
    return {"name": codec.name, "per_image": per_image, "results": results, "left_out": left_out}


def mean_note(evaluation: dict) -> str | None:
    """``"over N of M images (left out: a: reason; ...)"`` when the mean row leaves images out, else None."""
    left_out = evaluation.get("left_out") or {}
    if not left_out:
        return None
    total = len(evaluation["per_image"])
    reasons = "; ".join(f"{image}: {reason}" for image, reason in left_out.items())
    return f"over {total - len(left_out)} of {total} images (left out: {reasons})"


def write_results(evaluations: list[dict], out: str | Path) -> tuple[Path, Path]:
    """Write ``out.json`` (CompressAI-style: ``results`` lists one value per model) and ``out.csv`` (per image).

    Both say which images each mean covers: the JSON's ``mean_over`` gives, per model, ``images`` (how
    many entered the mean), ``of`` (how many were evaluated) and ``left_out`` (image -> reason); the
    CSV's ``n`` column holds the count on the mean row and ``note`` names what was left out."""
    out = Path(out)
    summary = {
        "name": ", ".join(e["name"] for e in evaluations),
        "description": "robustnic eval: real bitstreams (compress -> bytes -> decompress); bpp counts the "
                       "entropy-coded payload (as CompressAI), bpp-file the whole file with its header",
        "models": [e["name"] for e in evaluations],
        "results": {k: [e["results"].get(k) for e in evaluations] for k in RD_KEYS},
        "mean_over": {e["name"]: {"images": len(e["per_image"]) - len(e.get("left_out") or {}),
                                  "of": len(e["per_image"]), "left_out": dict(e.get("left_out") or {})}
                      for e in evaluations},
        "per_image": {e["name"]: e["per_image"] for e in evaluations},
    }
    json_path, csv_path = out.with_suffix(".json"), out.with_suffix(".csv")
    atomic_write_text(json_path, json.dumps(json_safe(summary), indent=2, allow_nan=False))
    table = []
    for e in evaluations:
        left_out = e.get("left_out") or {}
        for image, row in e["per_image"].items():
            note = f"left out of the mean: {left_out[image]}" if image in left_out else None
            table.append({"model": e["name"], "image": image} | {k: row.get(k) for k in RD_KEYS} | {"note": note})
        n = len(e["per_image"]) - len(left_out)
        note = f"over {n} of {len(e['per_image'])} images" if left_out else None
        table.append({"model": e["name"], "image": "mean"} | {k: e["results"].get(k) for k in RD_KEYS}
                     | {"n": n, "note": note})
    write_csv(csv_path, table, ["model", "image", *RD_KEYS, "n", "note"], float_format="{:.6g}")
    return json_path, csv_path
