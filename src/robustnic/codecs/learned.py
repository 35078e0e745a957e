"""A CompressAI model behind the :class:`~robustnic.codecs.base.Codec` interface."""

from __future__ import annotations

import contextlib
import time
import types
from typing import Iterator

import torch
from compressai.entropy_models import EntropyModel
from compressai.models.google import get_scale_table
from compressai.models.base import CompressionModel

from robustnic.codecs import container
from robustnic.codecs.architectures import architecture_of
from robustnic.codecs.base import STANDINS, Codec, CodecOutput, Coded
from robustnic.codecs.checkpoint import state_dict_fingerprint
from robustnic.data.images import check_image_tensor, crop_to, pad_to_multiple
from robustnic.errors import BitstreamError

#: Every CompressAI image architecture downsamples by 2**6 overall (g_a then h_a).
PAD_MULTIPLE = 64


def _ste_quantize(self: EntropyModel, inputs: torch.Tensor, mode: str, means: torch.Tensor | None = None):
    """EntropyModel.quantize whose rounding passes gradients straight through."""
    if mode != "dequantize":
        return type(self).quantize(self, inputs, mode, means)
    centred = inputs - means if means is not None else inputs
    rounded = centred + (torch.round(centred) - centred).detach()
    return rounded + means if means is not None else rounded


@contextlib.contextmanager
def quantisation_standin(net: CompressionModel, standin: str) -> Iterator[None]:
    """Run ``net.forward`` with quantisation replaced by ``standin`` ("noise" or "ste")."""
    if standin not in ("noise", "ste"):
        raise ValueError(f"stand-in must be 'noise' or 'ste' here, got {standin!r}")
    was_training = net.training
    patched = []
    try:
        if standin == "noise":
            net.train()  # CompressAI adds uniform noise in training mode (no BN/dropout in these nets)
        else:
            net.eval()
            for m in net.modules():
                if isinstance(m, EntropyModel):
                    m.quantize = types.MethodType(_ste_quantize, m)
                    patched.append(m)
        yield
    finally:
        for m in patched:
            del m.quantize
        net.train(was_training)


def is_updated(net: CompressionModel) -> bool:
    """Whether the entropy coder tables exist (``update()`` has run)."""
    return all(
        m._quantized_cdf.numel() > 0 for m in net.modules() if isinstance(m, EntropyModel)
    )


#: CompressAI's default Gaussian scale table: 64 levels, log-spaced from 0.11 to 256.
COMPRESSAI_SCALE_LEVELS = 64


def update_coder_tables(net: CompressionModel, scale_levels: int | None = None) -> None:
    """Rebuild the entropy coder tables (``update(force=True)``).

    ``scale_levels`` (Gaussian-conditional models only) replaces CompressAI's 64-level scale table
    by a finer one over the same range. The encoder codes every latent with the first table scale at
    or above its predicted scale, so a coarse table overpays where the predicted scales are small:
    mean-scale models (mbt2018-mean, mbt2018) lose ~4% of real bpp to it, 256 levels ~1%. The table
    is a buffer of the model: it is saved with the weights and covered by the bitstream's model
    fingerprint, so a stream coded with one table is refused by a model that has another.
    """
    if scale_levels is not None and hasattr(net, "gaussian_conditional"):
        if scale_levels < 2:
            raise ValueError(f"scale_levels must be at least 2, got {scale_levels}")
        net.update(scale_table=get_scale_table(levels=scale_levels), force=True)
    else:
        net.update(force=True)


def scale_levels_of(net: CompressionModel) -> int | None:
    """Number of levels of the model's Gaussian scale table (None without a Gaussian conditional)."""
    gc = getattr(net, "gaussian_conditional", None)
    return int(gc.scale_table.numel()) if gc is not None else None


class LearnedCodec(Codec):
    """Wrap any CompressAI image model (built, loaded or trained) as a codec.

    By default the parameters are frozen and the net is put in eval mode (attacks differentiate
    with respect to the input only); pass ``freeze=False`` to wrap a net that is being trained
    (adversarial fine-tuning attacks the live model). The entropy coder tables are built with
    ``update()`` if the model has none yet. ``pretrained=True`` says the weights are CompressAI's
    pretrained zoo model its ``quality`` and ``metric`` name (:func:`~robustnic.codecs.zoo.load_pretrained`):
    while they stay unchanged, its bitstreams say so, and decode without naming the model.
    """

    differentiable = True

    def __init__(
        self,
        net: CompressionModel,
        name: str | None = None,
        quality: int = 0,
        metric: str | None = "mse",
        device: str | torch.device = "cpu",
        freeze: bool = True,
        pretrained: bool = False,
    ):
        self.net = net
        if freeze:
            net.eval().requires_grad_(False)
        self.arch = architecture_of(net)
        self.name = name or (self.arch.name if self.arch else type(net).__name__)
        self.codec_code = self.arch.code if self.arch else container.CODEC_CUSTOM
        self.quality, self.metric = quality, metric
        # wall seconds of the last net.compress / net.decompress (what roundtrip reports)
        self._coder_seconds = [0.0, 0.0]
        if not is_updated(net):
            net.update(force=True)
        self.refresh()
        self._pretrained_tag = self._fingerprint if pretrained else None
        self.to(device)

    def refresh(self) -> None:
        """Recompute the weight fingerprint (call after changing the weights and ``update()``)."""
        state = self.net.state_dict()
        self._fingerprint = state_dict_fingerprint(state)[:4]
        # widest conv: bounds the latent elements one rANS string can code (decoder guard)
        self._widest = max(v.shape[0] for v in state.values() if v.dim() == 4)

    def to(self, device: str | torch.device) -> "LearnedCodec":
        super().to(device)
        self.net.to(self.device)
        return self

    @property
    def fingerprint(self) -> str:
        """Hex of the 4 fingerprint bytes written into every bitstream header."""
        return self._fingerprint.hex()

    @property
    def compressai_pretrained(self) -> bool:
        """Whether the weights are CompressAI's pretrained ones, unchanged since loading."""
        return self._pretrained_tag is not None and self._pretrained_tag == self._fingerprint

    def _model_tag(self) -> bytes:
        return self._fingerprint

    # ----- differentiable forward -------------------------------------------------------
    def forward(self, x: torch.Tensor, standin: str = "none", rate: bool = False) -> CodecOutput:
        if standin not in STANDINS:
            raise ValueError(f"unknown stand-in {standin!r}; choose from {STANDINS}")
        xp, size = pad_to_multiple(check_image_tensor(x), PAD_MULTIPLE)
        likelihoods = None
        if standin == "none":
            x_hat = self.net.g_s(self.net.g_a(xp))
            if rate:
                with quantisation_standin(self.net, "ste"):
                    likelihoods = self.net(xp)["likelihoods"]
        else:
            with quantisation_standin(self.net, standin):
                out = self.net(xp)
            x_hat, likelihoods = out["x_hat"], (out["likelihoods"] if rate else None)
        return CodecOutput(crop_to(x_hat, size), likelihoods)

    # ----- real bitstreams ---------------------------------------------------------------
    def _latent_stride(self) -> int:
        return 16 if self.arch is not None and self.arch.name == "bmshj2018-factorized" else PAD_MULTIPLE

    def _encode(self, x: torch.Tensor) -> tuple[list[bytes], tuple[int, ...]]:
        xp, _ = pad_to_multiple(x, PAD_MULTIPLE)
        with torch.no_grad():
            t0 = time.perf_counter()
            out = self.net.compress(xp)
            self._coder_seconds[0] = time.perf_counter() - t0
        return [s[0] for s in out["strings"]], tuple(int(v) for v in out["shape"])

    def _decode(self, strings: list[bytes], shape: tuple[int, ...], size: tuple[int, int]) -> torch.Tensor:
        stride = self._latent_stride()
        expected = tuple(-(-s // PAD_MULTIPLE) * PAD_MULTIPLE // stride for s in size)
        if self.arch is not None and tuple(shape) != expected:
            raise BitstreamError(f"bitstream latent shape {shape} does not match its image size {size}")
        hp, wp = (-(-s // PAD_MULTIPLE) * PAD_MULTIPLE for s in size)
        strings = container.guard_rans_strings(strings, hp * wp // (256 if self.arch else 16) * self._widest)
        try:
            with torch.no_grad():
                t0 = time.perf_counter()
                out = self.net.decompress([[s] for s in strings], list(shape))
                self._coder_seconds[1] = time.perf_counter() - t0
        except Exception as exc:  # the entropy decoder's own errors on foreign strings
            raise BitstreamError(f"entropy decoding failed: {type(exc).__name__}: {exc}") from None
        return crop_to(out["x_hat"], size)

    def roundtrip(self, x: torch.Tensor, transform: int = 0) -> Coded:
        """compress -> bytes -> decompress; the times are those of the model's own ``compress`` and
        ``decompress`` on the padded tensor, as CompressAI's ``eval_model`` measures them (the container,
        padding and the decoder's input checks are not counted)."""
        coded = super().roundtrip(x, transform)
        coded.encode_time, coded.decode_time = self._coder_seconds
        return coded
