"""Quality and rate metrics, computed like CompressAI's ``eval_model``.

PSNR and MS-SSIM are measured on 8-bit values (both images rounded to integers in 0..255), on the
image's own area (callers pass cropped tensors; padding never enters a metric). The two images may
lie on different devices (a codec on a GPU decodes onto it): the second is moved to the first's.

Perceptual full-reference metrics, from ``piq`` on the same 8-bit values (each None on an image too
small for it, as :func:`ms_ssim`; the first argument is the reference):

==============  ==========================================  ======================  ================
function        what it measures                            identical images        needs
==============  ==========================================  ======================  ================
:func:`vif`     visual information fidelity (pixel domain,  1; lower is worse (may  41 px a side
                4 scales, luma; Sheikh & Bovik 2006)        exceed 1 for added
                                                            contrast)
:func:`gmsd`    gradient magnitude similarity deviation     0; higher is worse      3 px along one
                (luma at half size; Xue et al. 2013)                                side
:func:`haarpsi` Haar-wavelet perceptual similarity (YIQ,    1; lower is worse       16 px a side
                half size, 3 scales; Reisenhofer 2018)
==============  ==========================================  ======================  ================

DISTS and LPIPS are left out: both need network weights that piq downloads on first use, and
robustnic works offline.
"""

from __future__ import annotations

import math
from typing import Callable

import piq
import torch

#: MS-SSIM with 5 scales and an 11-pixel window needs sides larger than this.
MS_SSIM_MIN_SIDE = 161
#: MS-SSIM's window (CompressAI / pytorch-msssim: 11 px, sigma 1.5) and scale weights (Wang et al. 2003).
MS_SSIM_WINDOW = 11
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _as_8bit(x: torch.Tensor) -> torch.Tensor:
    return x.detach().float().mul(255).clamp(0, 255).round()


def mse_8bit(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean squared error of two [0, 1] images after rounding to 8 bits, in [0, 1]² units."""
    return torch.mean((_as_8bit(a) - _as_8bit(b).to(a.device)) ** 2).item() / 255.0**2


def mse_to_psnr(mse: float, peak: float = 1.0) -> float:
    """PSNR in dB for an MSE (``inf`` for identical images)."""
    return float("inf") if mse <= 0 else 10 * math.log10(peak**2 / mse)


def psnr_to_mse(psnr: float, peak: float = 1.0) -> float:
    """MSE for a PSNR in dB."""
    return peak**2 / 10 ** (psnr / 10)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB between two [0, 1] images, on 8-bit values (CompressAI's ``psnr-rgb``)."""
    return mse_to_psnr(mse_8bit(a, b))


def ms_ssim_scales(height: int, width: int) -> int:
    """How many MS-SSIM scales an image of this size allows (5 above 160 px a side, 0 under 11 px).

    Each scale halves the image and the 11-pixel window must fit the smallest one:
    ``min(height, width) >= 10 * 2 ** (scales - 1) + 1``.
    """
    side = min(height, width)
    if side < MS_SSIM_WINDOW:
        return 0
    return min(len(MS_SSIM_WEIGHTS), int(math.log2((side - 1) / (MS_SSIM_WINDOW - 1))) + 1)


def ms_ssim(a: torch.Tensor, b: torch.Tensor) -> float | None:
    """MS-SSIM on 8-bit values (CompressAI's ``ms-ssim-rgb``).

    Images larger than 160 px a side get the standard 5 scales; smaller ones get as many as fit
    (:func:`ms_ssim_scales`, weights renormalised: record the count beside the value, as the eval and
    attack rows do in ``ms-ssim-scales``); None only under 11 px a side, where no window fits.
    """
    scales = ms_ssim_scales(*a.shape[-2:])
    if scales == 0:
        return None
    x, y = _as_8bit(a), _as_8bit(b).to(a.device)
    if x.dim() == 3:
        x, y = x[None], y[None]
    weights = torch.tensor(MS_SSIM_WEIGHTS[:scales], dtype=x.dtype, device=x.device)
    return piq.multi_scale_ssim(x, y, data_range=255.0, kernel_size=MS_SSIM_WINDOW, scale_weights=weights).item()


#: VIF's smallest side: piq's four scales of valid-padded Gaussian windows (17, 9, 5, 3 px) need 41 px.
VIF_MIN_SIDE = 41
#: HaarPSI's smallest side: piq's coarsest Haar filter (3 scales) is 16 px and must fit the image.
HAARPSI_MIN_SIDE = 16


def _pair(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both images as ``(N, 3, H, W)`` 8-bit values on ``a``'s device."""
    x, y = _as_8bit(a), _as_8bit(b).to(a.device)
    return (x[None], y[None]) if x.dim() == 3 else (x, y)


def gmsd_pixels(height: int, width: int) -> int:
    """Pixels of the similarity map GMSD takes the deviation of (piq halves the image, padding an odd
    side's end): one pixel, whose deviation is 0 whatever the images, when both sides are under 3 px."""
    pad = max(height % 2, width % 2)
    return ((height + pad) // 2) * ((width + pad) // 2)


def vif(a: torch.Tensor, b: torch.Tensor) -> float | None:
    """Visual information fidelity of ``b`` against the reference ``a`` (``piq.vif_p``), on 8-bit values.

    1 for identical images, lower is worse (0: no information of ``a`` left); above 1 where ``b``
    adds contrast. Not symmetric: ``a`` is the source. Measured on the luma at 4 scales. ``a`` and
    ``b`` are one image, ``(3, H, W)`` or ``(1, 3, H, W)`` in [0, 1]; None under 41 px a side
    (:data:`VIF_MIN_SIDE`). The slowest of the three (its 17-px window): about 1.5 MS-SSIMs, 0.1 s at
    256x256 and 0.45 s at 768x512 on one CPU thread."""
    if min(a.shape[-2:]) < VIF_MIN_SIDE:
        return None
    x, y = _pair(a, b)
    return piq.vif_p(y, x, data_range=255.0).item()  # piq: (distorted, reference)


def gmsd(a: torch.Tensor, b: torch.Tensor) -> float | None:
    """Gradient magnitude similarity deviation of ``a`` and ``b`` (``piq.gmsd``), on 8-bit values.

    0 for identical images, higher is worse (a standard deviation of similarities in [0, 1]);
    symmetric. Measured on the luma at half size. One image, ``(3, H, W)`` or ``(1, 3, H, W)`` in
    [0, 1]; None when both sides are under 3 px (a one-pixel similarity map, :func:`gmsd_pixels`)."""
    if gmsd_pixels(*a.shape[-2:]) < 2:
        return None
    x, y = _pair(a, b)
    return piq.gmsd(x, y, data_range=255.0).item()


def haarpsi(a: torch.Tensor, b: torch.Tensor) -> float | None:
    """Haar wavelet-based perceptual similarity of ``a`` and ``b`` (``piq.haarpsi``), on 8-bit values.

    1 for identical images, lower is worse (0 at worst); symmetric. Measured in YIQ at half size with
    3 Haar scales. One image, ``(3, H, W)`` or ``(1, 3, H, W)`` in [0, 1]; None under 16 px a side
    (:data:`HAARPSI_MIN_SIDE`). Two identical all-black images, where piq divides by zero weights,
    give 1."""
    if min(a.shape[-2:]) < HAARPSI_MIN_SIDE:
        return None
    x, y = _pair(a, b)
    value = piq.haarpsi(x, y, data_range=255.0).item()
    if not math.isfinite(value) and torch.equal(x, y):
        return 1.0
    return value


#: The perceptual metrics by the name rows give them (``vif``, ``gmsd``, ``haarpsi``), each ``f(reference, image)``.
PERCEPTUAL: dict[str, Callable[[torch.Tensor, torch.Tensor], float | None]] = {
    "vif": vif, "gmsd": gmsd, "haarpsi": haarpsi}


def estimated_bits(likelihoods: dict[str, torch.Tensor]) -> torch.Tensor:
    """Total information content in bits of all latents (y and the hyperprior's z), differentiable.

    Summed per batch element: returns a ``(B,)`` tensor.
    """
    total = 0
    for lk in likelihoods.values():
        total = total + torch.log2(lk).flatten(1).sum(1)
    return -total


def estimated_bpp(likelihoods: dict[str, torch.Tensor], num_pixels: int) -> torch.Tensor:
    """Estimated bits per pixel from latent likelihoods, per batch element (differentiable)."""
    return estimated_bits(likelihoods) / num_pixels


def delta_psnr(x: torch.Tensor, x_adv: torch.Tensor, x_hat: torch.Tensor, x_hat_adv: torch.Tensor) -> float:
    """Chen & Ma's VI = 10·log10(MSE(x̂(x'), x̂(x)) / MSE(x', x)): how much the codec amplifies δ."""
    out, inp = mse_8bit(x_hat_adv, x_hat), mse_8bit(x_adv, x)
    if inp == 0:
        return float("nan")
    if out == 0:
        return float("-inf")
    return 10 * math.log10(out / inp)


__all__ = [
    "HAARPSI_MIN_SIDE",
    "MS_SSIM_MIN_SIDE",
    "PERCEPTUAL",
    "VIF_MIN_SIDE",
    "delta_psnr",
    "estimated_bits",
    "estimated_bpp",
    "gmsd",
    "gmsd_pixels",
    "haarpsi",
    "ms_ssim",
    "ms_ssim_scales",
    "mse_8bit",
    "mse_to_psnr",
    "psnr",
    "psnr_to_mse",
    "vif",
]
