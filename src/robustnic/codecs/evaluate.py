"""Clean rate-distortion evaluation from real bitstreams, with CompressAI ``eval_model``'s key names."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Iterable, Iterator

import torch
from tqdm.auto import tqdm

from robustnic.codecs.autoregressive import coded_likelihoods, is_autoregressive
from robustnic.codecs.base import Codec
from robustnic.codecs.learned import PAD_MULTIPLE, LearnedCodec
from robustnic.data.images import pad_to_multiple
from robustnic.metrics import estimated_bpp, ms_ssim, ms_ssim_scales, psnr
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
RD_KEYS = ("psnr-rgb", "ms-ssim-rgb", "bpp", "bpp-file", "bpp-estimated", "bpp-forward", "encoding_time",
           "decoding_time", "ms-ssim-scales")


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
    """Real round trip of one image: PSNR, MS-SSIM (8-bit), bpp (payload), file bpp, estimated bpp, times.

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
    """Mean of every key of the first row over rows, by :func:`robustnic.utils.tables.mean_count`'s rule
    (None, NaN and inf left out); None where no value entered (a codec without the estimate)."""
    rows = list(rows)
    out: dict[str, float | None] = {}
    for key in rows[0] if rows else []:
        mean, count = mean_count(r.get(key) for r in rows)
        out[key] = mean if count else None
    return out


def evaluate_codec(
    codec: Codec, images: dict[str, torch.Tensor], progress: bool = True, threads: int | None = EVAL_THREADS
) -> dict:
    """Evaluate ``codec`` on named images; returns ``{"name", "per_image": {img: row}, "results": mean}``.

    ``threads``: torch threads while evaluating (see :func:`evaluate_image`)."""
    per_image = {}
    with torch_threads(threads):
        for name, x in tqdm(images.items(), desc=f"eval {codec.name}", disable=not progress, leave=False):
            per_image[name] = _evaluate_image(codec, x)
    return {"name": codec.name, "per_image": per_image, "results": mean_row(per_image.values())}


def write_results(evaluations: list[dict], out: str | Path) -> tuple[Path, Path]:
    """Write ``out.json`` (CompressAI-style: ``results`` lists one value per model) and ``out.csv`` (per image)."""
    out = Path(out)
    summary = {
        "name": ", ".join(e["name"] for e in evaluations),
        "description": "robustnic eval: real bitstreams (compress -> bytes -> decompress)",
        "models": [e["name"] for e in evaluations],
        "results": {k: [e["results"].get(k) for e in evaluations] for k in RD_KEYS},
        "per_image": {e["name"]: e["per_image"] for e in evaluations},
    }
    json_path, csv_path = out.with_suffix(".json"), out.with_suffix(".csv")
    atomic_write_text(json_path, json.dumps(json_safe(summary), indent=2, allow_nan=False))
    table = [{"model": e["name"], "image": image} | {k: row.get(k) for k in RD_KEYS}
             for e in evaluations for image, row in [*e["per_image"].items(), ("mean", e["results"])]]
    write_csv(csv_path, table, ["model", "image", *RD_KEYS], float_format="{:.6g}")
    return json_path, csv_path
