"""Verification of attacks on real bitstreams: compress -> bytes -> decompress of the 8-bit images.

Every number an attack report shows comes from here. Per image, :func:`verify_attack` returns a
dict with (PSNR in dB on 8-bit values, bpp of the entropy-coded payload, CompressAI's ``bpp``):

==================  ==============================================================================
``psnr-in``         PSNR(x, x_adv): the input distortion (``mse-in``, ``linf-in`` in 1/255, ``l2-in``)
``psnr-clean``      PSNR(x, x̂(x)): the clean reconstruction, decoded from its bytes
``psnr-out``        PSNR(x, x̂(x_adv)): the attacked reconstruction vs the source
``psnr-drop``       ``psnr-clean - psnr-out``
``psnr-out-clean``  PSNR(x̂(x), x̂(x_adv)): attacked vs clean reconstruction
``delta-psnr``      Chen & Ma's VI = 10·log10(MSE(x̂(x_adv), x̂(x)) / MSE(x_adv, x))
``ms-ssim-*``       MS-SSIM vs the source, clean and attacked (fewer scales below 161 px, recorded in
                    ``ms-ssim-scales``; None below 11 px)
``vif-in``          VIF(x, x_adv), ``gmsd-in``, ``haarpsi-in``: how visible the perturbation is
                    (:mod:`robustnic.metrics`: VIF and HaarPSI 1, GMSD 0 for identical images)
``vif-clean``       VIF(x, x̂(x)), ``gmsd-clean``, ``haarpsi-clean``: the clean reconstruction
``vif-out``         VIF(x, x̂(x_adv)), ``gmsd-out``, ``haarpsi-out``: the attacked reconstruction
                    (VIF None below 41 px, HaarPSI below 16 px, GMSD for 2x2 px and smaller)
``bpp-clean/adv``   real bpp of the two bitstreams; ``bpp-increase`` = adv - clean
``bpp-est-*``       bpp estimated from the likelihoods (quantised forward; None for classical codecs)
``psnr-out-standin`` PSNR(x, stand-in reconstruction of x_adv), what the attack optimised
``standin-gap``     PSNR(stand-in reconstruction, real decoded reconstruction) of x_adv: how far the
                    attack's relaxation is from the real decoder (high = they agree)
``encode-time``...  seconds of the adversarial image's encode and decode
==================  ==============================================================================

Non-finite values (e.g. PSNR of identical images) are ``float("inf")``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from robustnic.attacks.budget import L2, Budget, Linf, parse_budget
from robustnic.codecs.base import STANDINS, Codec, Coded
from robustnic.data.images import check_image_tensor, quantize_8bit
from robustnic.errors import ImageError, RobustnicError
from robustnic.metrics import PERCEPTUAL, delta_psnr, estimated_bpp, ms_ssim, ms_ssim_scales, mse_8bit, psnr


@dataclass
class Verified:
    """One image's verification: the row of numbers and the decoded images behind it."""

    row: dict
    clean: Coded
    adv: Coded


def perceptual_row(x: torch.Tensor, images: dict[str, torch.Tensor]) -> dict[str, float | None]:
    """``{"vif-NAME": vif(x, image), "gmsd-NAME": ..., "haarpsi-NAME": ...}`` for each named image
    (:data:`robustnic.metrics.PERCEPTUAL`, the source ``x`` as reference)."""
    return {f"{metric}-{name}": fn(x, image) for name, image in images.items() for metric, fn in PERCEPTUAL.items()}


@torch.no_grad()
def _estimated_bpp(codec: Codec, x: torch.Tensor) -> float | None:
    out = codec.forward(x.to(codec.device), standin="ste", rate=True)
    if not out.likelihoods:
        return None
    return float(estimated_bpp(out.likelihoods, x.shape[-2] * x.shape[-1])[0])


@torch.no_grad()
def _standin_reconstruction(codec: Codec, x: torch.Tensor, standin: str) -> torch.Tensor:
    with torch.random.fork_rng(devices=[codec.device] if codec.device.type == "cuda" else []):
        torch.manual_seed(0)  # the noise stand-in draws noise: make the report reproducible
        return codec.forward(x.to(codec.device), standin=standin).x_hat.clamp(0, 1).cpu()


def verify_images(
    codec: Codec,
    x: torch.Tensor,
    x_adv: torch.Tensor,
    standin: str = "none",
    budget: Budget | str | None = None,
    attack_time: float | None = None,
) -> list[Verified]:
    """Like :func:`verify_attack`, also keeping the bitstreams and decoded images."""
    x = check_image_tensor(x, "source images").detach().cpu().float()
    x_adv = check_image_tensor(x_adv, "adversarial images").detach().cpu().float()
    if x.shape != x_adv.shape:
        raise ImageError(f"source images {tuple(x.shape)} and adversarial images {tuple(x_adv.shape)} differ in shape")
    if standin not in STANDINS:
        raise RobustnicError(f"unknown stand-in {standin!r}; choose from {', '.join(STANDINS)}")
    budget = parse_budget(budget) if budget is not None else None
    x_adv = quantize_8bit(x_adv)  # what a user saves; attacks already return 8-bit images
    results = []
    for i in range(x.shape[0]):
        xi, ai = x[i : i + 1], x_adv[i : i + 1]
        clean, adv = codec.roundtrip(xi), codec.roundtrip(ai)
        hat_clean, hat_adv = clean.x_hat.cpu(), adv.x_hat.cpu()
        standin_hat = _standin_reconstruction(codec, ai, standin)
        est_clean, est_adv = _estimated_bpp(codec, xi), _estimated_bpp(codec, ai)
        row = {
            "height": int(xi.shape[-2]),
            "width": int(xi.shape[-1]),
            "psnr-in": psnr(xi, ai),
            "mse-in": mse_8bit(xi, ai),
            "linf-in": float(Linf(1).measure(xi, ai)[0]),
            "l2-in": float(L2(1).measure(xi, ai)[0]),
            "psnr-clean": psnr(xi, hat_clean),
            "psnr-out": psnr(xi, hat_adv),
            "psnr-drop": psnr(xi, hat_clean) - psnr(xi, hat_adv),
            "psnr-out-clean": psnr(hat_clean, hat_adv),
            "delta-psnr": delta_psnr(xi, ai, hat_clean, hat_adv),
            "ms-ssim-clean": ms_ssim(xi, hat_clean),
            "ms-ssim-out": ms_ssim(xi, hat_adv),
            "ms-ssim-scales": ms_ssim_scales(*xi.shape[-2:]),
            **perceptual_row(xi, {"in": ai, "clean": hat_clean, "out": hat_adv}),
            "bpp-clean": clean.bpp,
            "bpp-adv": adv.bpp,
            "bpp-increase": adv.bpp - clean.bpp,
            "bpp-est-clean": est_clean,
            "bpp-est-adv": est_adv,
            "psnr-out-standin": psnr(xi, standin_hat),
            "standin": standin,
            "standin-gap": psnr(standin_hat, hat_adv),
            "encode-time": adv.encode_time,
            "decode-time": adv.decode_time,
        }
        if budget is not None:
            row["budget"] = str(budget)
            row["budget-ok"] = budget.satisfied(xi, ai)
        if attack_time is not None:
            row["attack-time"] = attack_time / x.shape[0]
        results.append(Verified(row=row, clean=clean, adv=adv))
    return results


def verify_attack(
    codec: Codec,
    x: torch.Tensor,
    x_adv: torch.Tensor,
    standin: str = "none",
    budget: Budget | str | None = None,
    attack_time: float | None = None,
) -> list[dict]:
    """Measure an attack on real bitstreams; one dict per image (keys in the module docstring).

    ``x`` and ``x_adv`` are ``(B, 3, H, W)`` in [0, 1]; ``x_adv`` is rounded to 8 bits first (what
    a user saves). ``standin`` is the one the attack used (for ``standin-gap``); with ``budget``
    the rows say whether it holds (``budget-ok``); ``attack_time`` (seconds for the batch) is
    reported per image.

    >>> rows = verify_attack(codec, x, atk(x), budget=atk.budget)   # doctest: +SKIP
    >>> rows[0]["psnr-in"], rows[0]["psnr-out"], rows[0]["delta-psnr"]   # doctest: +SKIP
    """
    return [v.row for v in verify_images(codec, x, x_adv, standin, budget, attack_time)]


__all__ = ["Verified", "perceptual_row", "verify_attack", "verify_images"]
