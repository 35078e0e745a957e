"""Geometric self-ensemble (Chen & Ma, TCSVT 2023, Sec. "Geometric self-ensemble").

The encoder tries the 8 flips/rotations of the input (:mod:`robustnic.codecs.transforms`), keeps
the one with the lowest cost measured *in the original orientation*, and writes its index into the
3-bit transform field of the container header; the decoder (any robustnic decoder, the plain
model's included) undoes it exactly. The 3 bits are counted in ``Coded.bpp`` (``side_bits = 3``).
An adversarial perturbation is tuned to one orientation, so another one usually codes cleanly.

Choosing (``criterion``): ``"distortion"`` - MSE between the decoded image and the input, as in the
paper; ``"rd"`` - ``λ·255²·MSE + bpp``, CompressAI's training cost.

Searching (``search``):

* ``"exhaustive"`` - entropy-code and decode all 8 candidates, pick the best real cost (the paper's
  method; about 8 encodes and 8 decodes);
* ``"proxy"`` - rank the 8 with the batched differentiable forward (``standin="ste"``: real
  rounding, so the proxy reconstruction is the decoder's up to the rate estimate) on a sample of
  square tiles covering ``proxy_fraction`` of the image (all 8 orientations of a square tile
  batch together), then entropy-code only the ``top_k`` best and pick among them by real cost.
  With ``proxy_fraction=1`` the whole image is used (one batch of 8 for square images, two
  batches of 4 for non-square ones, whose rotations swap height and width).

Attacking it (``attack_mode``, what :meth:`SelfEnsembleCodec.forward` returns; attacks only call
``forward``, so an attack from :mod:`robustnic.attacks` run on this codec knows the defense):

* ``"chosen"`` (default) - the transform the encoder would pick for the current input (a
  non-differentiable choice made with the whole-image proxy), then the ordinary forward through
  it. Against the distortion criterion this follows the gradient of the *minimum* over the 8
  transforms, which is what the attacker must raise.
* ``"eot"`` - expectation over the 8 transforms: the 8 inverse-transformed reconstructions of each
  image **concatenated along the channel axis** into ``(B, 24, H, W)`` (and the likelihoods,
  flattened per image into one tensor, raised to the power 1/8). Any mean of squared differences
  between two such outputs, per image or over the batch, is then exactly the mean over the 8
  transforms of the per-transform loss, and summed log-likelihoods are the mean bits, so the
  attack base's distortion (against the clean reconstruction) and rate objectives average over
  transforms with no change to it. Anything that compares this output with a 3-channel image
  (the ``reference="source"`` objective, ``verify_attack``'s stand-in PSNR, an attack's progress
  bar) fails loudly with a shape error: attack a :meth:`~DefendedCodec.with_attack_mode` copy and
  verify with the default one (:func:`robustnic.defenses.evaluate.attack_defense` does this).
* ``"identity"`` - the wrapped codec's forward (an attacker that ignores the defense; the bytes
  are still chosen by the ensemble).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from robustnic.codecs.architectures import LAMBDAS
from robustnic.codecs.base import STANDINS, Codec, CodecOutput, payload_bits
from robustnic.codecs.zoo import read_manifest
from robustnic.codecs.transforms import NUM_TRANSFORMS, apply_transform, inverse_transform
from robustnic.data.images import check_image_tensor
from robustnic.defenses.base import DefendedCodec, expectation_output, oriented_output
from robustnic.defenses.registry import register_defense
from robustnic.errors import RobustnicError
from robustnic.metrics import estimated_bits

CRITERIA = ("distortion", "rd")
SEARCHES = ("exhaustive", "proxy")
ATTACK_MODES = ("chosen", "eot", "identity")
#: Bits of the transform index in the container header (counted in bpp).
TRANSFORM_BITS = 3
#: Largest number of images in one proxy forward call (bounds memory on large images).
_MAX_PROXY_BATCH = 64


def default_lambda(codec: Codec) -> float:
    """The RD trade-off a codec was trained with: its manifest row's λ for a shipped model, else
    CompressAI's λ for its quality (q3's when unknown)."""
    row = read_manifest().get(codec.name)
    if row is not None and "lambda" in row.info:
        return float(row.info["lambda"])
    table = LAMBDAS.get(codec.metric or "mse", LAMBDAS["mse"])
    return table.get(codec.quality, table[3])


def transform_groups(size: tuple[int, int]) -> list[tuple[int, ...]]:
    """Transform indices that can share one batch: all 8 for a square image, else the 4 that keep
    ``(H, W)`` and the 4 that swap it (indices 4..7 transpose)."""
    if size[0] == size[1]:
        return [tuple(range(NUM_TRANSFORMS))]
    return [(0, 1, 2, 3), (4, 5, 6, 7)]


def forward_transforms(
    codec: Codec, x: torch.Tensor, standin: str = "none", rate: bool = False
) -> list[CodecOutput]:
    """The codec's differentiable forward on the 8 transforms of the batch ``x``, batched by shape.

    Returns 8 outputs (index = transform) whose reconstructions are inverse-transformed back to
    ``x``'s orientation, ``(B, 3, H, W)`` each; likelihood tensors keep the transformed layout.
    """
    B = x.shape[0]
    outs: list[CodecOutput | None] = [None] * NUM_TRANSFORMS
    for group in transform_groups(tuple(x.shape[-2:])):
        out = codec.forward(torch.cat([apply_transform(x, t) for t in group]), standin=standin, rate=rate)
        for i, t in enumerate(group):
            lk = None
            if out.likelihoods is not None:
                lk = {k: v[i * B : (i + 1) * B] for k, v in out.likelihoods.items()}
            outs[t] = CodecOutput(inverse_transform(out.x_hat[i * B : (i + 1) * B], t), lk)
    return outs  # type: ignore[return-value]


def proxy_tiles(size: tuple[int, int], tile: int, fraction: float) -> list[tuple[int, int]]:
    """Top-left corners of the square tiles the proxy looks at: a fixed, evenly spread sample of a
    centred ``tile``-pixel grid, covering about ``fraction`` of the image (at least one tile)."""
    h, w = size
    rows, cols = h // tile, w // tile
    top0, left0 = (h - rows * tile) // 2, (w - cols * tile) // 2
    grid = [(top0 + r * tile, left0 + c * tile) for r in range(rows) for c in range(cols)]
    n = min(len(grid), max(1, math.ceil(fraction * h * w / tile**2)))
    order = torch.randperm(len(grid), generator=torch.Generator().manual_seed(0))[:n].sort().values
    return [grid[int(i)] for i in order]


def parse_ensemble(spec: str) -> dict:
    """Keyword arguments of :class:`SelfEnsembleCodec` from ``ensemble[:rd][:proxy][:topK][:MODE]``."""
    kwargs: dict = {}
    for part in spec.lower().split(":")[1:]:
        if part in CRITERIA:
            kwargs["criterion"] = part
        elif part in SEARCHES:
            kwargs["search"] = part
        elif part in ATTACK_MODES:
            kwargs["attack_mode"] = part
        elif part.startswith("top") and part[3:].isdigit():
            kwargs["top_k"] = int(part[3:])
        else:
            raise RobustnicError(
                f"cannot understand {part!r} in {spec!r}: use ensemble[:{'|'.join(CRITERIA)}]"
                f"[:{'|'.join(SEARCHES)}][:topK][:{'|'.join(ATTACK_MODES)}]"
            )
    return kwargs


@dataclass
class EnsembleChoice:
    """What the encoder decided for one image."""

    #: The chosen transform index (0..7).
    transform: int
    #: The chosen candidate's container bytes.
    data: bytes
    #: Real costs of the candidates that were entropy-coded (transform -> cost); with a proxy
    #: search and ``top_k=1`` nothing is decoded and this is empty.
    costs: dict[int, float] = field(default_factory=dict)
    #: Proxy cost of every transform (index = transform), when a proxy ranked them.
    proxy_costs: list[float] | None = None


@register_defense("ensemble", "self-ensemble")
class SelfEnsembleCodec(DefendedCodec):
    """Wrap ``codec`` with the geometric self-ensemble (see the module docstring).

    Args:
        codec: any :class:`Codec` (learned, classical, or purified).
        criterion: ``"distortion"`` (the paper) or ``"rd"`` (``lmbda·255²·MSE + bpp``).
        lmbda: the RD trade-off; default the codec's own (:func:`default_lambda`).
        search: ``"exhaustive"`` (code all 8) or ``"proxy"`` (rank with the batched STE forward,
            code only the ``top_k`` best).
        top_k: candidates the proxy search entropy-codes (1: the proxy's choice is final).
        proxy_fraction: share of the image area the proxy looks at (1 = the whole image).
        tile: side of the proxy's square tiles, in pixels (a multiple of the codec's padding keeps
            it cheap: 64 for CompressAI models).
        attack_mode: what :meth:`forward` differentiates: ``"chosen"``, ``"eot"`` or ``"identity"``.

    >>> ens = SelfEnsembleCodec(load_codec("hyperprior-small:q3"), search="proxy")   # doctest: +SKIP
    >>> coded = ens.roundtrip(x)            # coded.bpp includes the 3-bit index   # doctest: +SKIP
    """

    defense = "ensemble"
    attack_modes = ATTACK_MODES

    @classmethod
    def from_spec(cls, codec: Codec, value: str) -> SelfEnsembleCodec:
        """The defense ``ensemble[:VALUE]`` (see :func:`parse_ensemble`) around ``codec``."""
        try:
            return cls(codec, **parse_ensemble(f"ensemble:{value}" if value else "ensemble"))
        except ValueError as exc:
            raise RobustnicError(str(exc)) from None

    def __init__(
        self,
        codec: Codec,
        criterion: str = "distortion",
        lmbda: float | None = None,
        search: str = "exhaustive",
        top_k: int = 1,
        proxy_fraction: float = 0.125,
        tile: int = 64,
        attack_mode: str = "chosen",
    ):
        if isinstance(codec, SelfEnsembleCodec):
            raise ValueError("the self-ensemble cannot wrap another self-ensemble (one transform field)")
        for value, allowed, what in ((criterion, CRITERIA, "criterion"), (search, SEARCHES, "search")):
            if value not in allowed:
                raise ValueError(f"unknown {what} {value!r}; choose from {allowed}")
        if not 1 <= int(top_k) <= NUM_TRANSFORMS:
            raise ValueError(f"top_k must be in 1..8, got {top_k}")
        if not 0 < proxy_fraction <= 1 or tile < 1:
            raise ValueError("proxy_fraction must be in (0, 1] and tile positive")
        self.defense = "ensemble" if criterion == "distortion" else "ensemble-rd"
        super().__init__(codec)
        self.criterion, self.search, self.top_k = criterion, search, int(top_k)
        self.proxy_fraction, self.tile = float(proxy_fraction), int(tile)
        self.attack_mode = attack_mode
        self.lmbda = float(lmbda) if lmbda is not None else default_lambda(codec)

    @property
    def side_bits(self) -> int:
        return super().side_bits + TRANSFORM_BITS

    # ----- costs -------------------------------------------------------------------------------
    def cost(self, mse: torch.Tensor | float, bpp: torch.Tensor | float | None) -> torch.Tensor | float:
        """The selection cost: MSE, or ``λ·255²·MSE + bpp`` for the RD criterion."""
        if self.criterion == "distortion" or bpp is None:
            return mse
        return self.lmbda * 255.0**2 * mse + bpp

    def real_cost(self, x: torch.Tensor, data: bytes) -> float:
        """Cost of one candidate bitstream: decode it and compare with ``x`` in ``x``'s orientation."""
        x_hat = self.codec.decompress(data)
        mse = torch.mean((x_hat.to(x) - x) ** 2).item()
        bpp = (payload_bits(data) + self.side_bits) / (x.shape[-2] * x.shape[-1])
        return float(self.cost(mse, bpp))

    @torch.no_grad()
    def proxy_costs(self, x: torch.Tensor, fraction: float | None = None) -> torch.Tensor:
        """Proxy cost of the 8 transforms for each image of ``x``: ``(B, 8)``.

        The batched forward with rounding (``standin="ste"``) on the proxy tiles (or the whole
        image when ``fraction`` is 1 or the image is smaller than one tile).
        """
        fraction = self.proxy_fraction if fraction is None else fraction
        rate = self.criterion == "rd"
        h, w = x.shape[-2:]
        if fraction >= 1 or min(h, w) < self.tile:
            outs = forward_transforms(self.codec, x, standin="ste", rate=rate)
            return torch.stack([self._batch_cost(x, o, h * w) for o in outs], dim=1)
        corners = proxy_tiles((h, w), self.tile, fraction)
        s = self.tile
        tiles = torch.stack([x[:, :, r : r + s, c : c + s] for r, c in corners], dim=1).flatten(0, 1)  # (B·n, 3, s, s)
        views = torch.cat([apply_transform(tiles, t) for t in range(NUM_TRANSFORMS)])  # (8·B·n, 3, s, s)
        costs = []
        for chunk in views.split(_MAX_PROXY_BATCH):
            out = self.codec.forward(chunk, standin="ste", rate=rate)
            costs.append(self._batch_cost(chunk, out, s * s))  # MSE is the same in any orientation
        per_tile = torch.cat(costs).view(NUM_TRANSFORMS, x.shape[0], len(corners))
        return per_tile.mean(2).t()

    def _batch_cost(self, x: torch.Tensor, out: CodecOutput, num_pixels: int) -> torch.Tensor:
        mse = ((out.x_hat.clamp(0, 1) - x) ** 2).flatten(1).mean(1)
        bpp = estimated_bits(out.likelihoods) / num_pixels if out.likelihoods is not None else None
        return self.cost(mse, bpp)  # type: ignore[return-value]

    # ----- the encoder ---------------------------------------------------------------------------
    def choose(self, x: torch.Tensor) -> EnsembleChoice:
        """Pick the transform for one image ``(1, 3, H, W)`` and return it with its bytes."""
        x = check_image_tensor(x).to(self.device)
        if x.shape[0] != 1:
            raise ValueError(f"the self-ensemble encodes one image at a time, got a batch of {x.shape[0]}")
        proxy = None
        if self.search == "exhaustive":
            candidates = list(range(NUM_TRANSFORMS))
        else:
            proxy = self.proxy_costs(x)[0]
            candidates = [int(t) for t in proxy.argsort(stable=True)[: self.top_k]]
        proxy_list = proxy.tolist() if proxy is not None else None
        if len(candidates) == 1:
            t = candidates[0]
            return EnsembleChoice(t, self.codec.compress(x, t), {}, proxy_list)
        coded = {t: self.codec.compress(x, t) for t in candidates}
        costs = {t: self.real_cost(x, data) for t, data in coded.items()}
        best = min(costs, key=lambda t: (costs[t], t))
        return EnsembleChoice(best, coded[best], costs, proxy_list)

    def compress(self, x: torch.Tensor, transform: int | None = None) -> bytes:
        """Encode with the best transform (or the one forced by ``transform``), index in the header."""
        if transform is not None:
            return self.codec.compress(x, transform)
        return self.choose(x).data

    # ----- what an attack that knows the defense differentiates --------------------------------
    def chosen_transforms(self, x: torch.Tensor) -> list[int]:
        """The transform the encoder would pick for each image of ``x`` (whole-image proxy)."""
        return [int(t) for t in self.proxy_costs(x.detach(), fraction=1.0).argmin(1)]

    def forward(self, x: torch.Tensor, standin: str = "none", rate: bool = False) -> CodecOutput:
        """Differentiable reconstruction under the ensemble, as set by ``attack_mode`` (module doc)."""
        if standin not in STANDINS:
            raise ValueError(f"unknown stand-in {standin!r}; choose from {STANDINS}")
        if self.attack_mode == "identity":
            return self.codec.forward(x, standin=standin, rate=rate)
        if self.attack_mode == "eot":
            return expectation_output(forward_transforms(self.codec, x, standin=standin, rate=rate), rate)
        return oriented_output(self.codec, x, self.chosen_transforms(x), standin=standin, rate=rate)
