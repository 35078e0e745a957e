"""What defines a training run: :class:`TrainConfig` (rate-distortion training) and
:class:`FinetuneConfig` (adversarial fine-tuning, :mod:`robustnic.training.finetune`).

Both are plain dataclasses importable without torch or compressai. Each field carries its
command-line form in its metadata (help text, option name, choices): :func:`cli_options` lists the
options of ``robustnic train`` / ``robustnic finetune`` from them, and :func:`cli_arguments` writes
the command line that reproduces a config, so neither the CLI nor recorded commands repeat fields.
"""

from __future__ import annotations

import typing
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any, Callable

from robustnic.attacks.registry import ATTACK_NAMES, REFERENCES
from robustnic.codecs.architectures import ARCHITECTURES, LAMBDAS, get_architecture
from robustnic.codecs.options import DEFAULT_MODEL, STANDINS
from robustnic.errors import RobustnicError

#: What fine-tuning measures the distortion against: the codec's ``input`` or the clean ``source``.
FINETUNE_TARGETS = ("input", "source")
#: Penalties fine-tuning can add to the RD loss (see :mod:`robustnic.training.regularizers`).
REGULARIZERS = ("none", "jacobian")


def setting(default: Any = MISSING, *, help: str, factory: Callable[[], Any] | None = None,
            flags: tuple[str, ...] = (), choices: tuple | None = None, metavar: str | None = None,
            default_text: str | None = None, cli: bool = True) -> Any:
    """A config field with its command-line form: ``help`` text, option ``flags`` (default
    ``--field-name``), ``choices``, ``metavar``, ``default_text`` (shown instead of the default value,
    for defaults that mean something else, such as None) and ``cli=False`` for fields without an option."""
    meta = {"help": help, "flags": flags, "choices": choices, "metavar": metavar,
            "default_text": default_text, "cli": cli}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class PatchTraining:
    """The settings rate-distortion training and fine-tuning share: the optimiser and the patches."""

    batch_size: int = setting(8, help="patches per step")
    patch_size: int = setting(128, help="training patch side in pixels (a multiple of 64)")
    lr: float = setting(1e-4, help="learning rate")
    aux_lr: float = setting(1e-3, help="learning rate of the entropy bottleneck's quantiles")
    clip_max_norm: float = setting(1.0, flags=("--clip",), help="gradient clipping max norm (0: off)")
    seed: int = setting(0, help="random seed (initialisation, patch sequence, inner attack)")
    images: list[str] = setting(factory=list, help="training image folder (repeatable)",
                                default_text="mate-backgrounds photos + package photos, never the held-out set")
    max_pixels: int | None = setting(None, help="refuse training images larger than this many pixels",
                                     default_text="the image loader's limit")


@dataclass
class TrainConfig(PatchTraining):
    """Everything that defines a training run (saved inside every checkpoint)."""

    architecture: str = setting("bmshj2018-hyperprior", flags=("--arch",), choices=tuple(ARCHITECTURES),
                                help="model architecture (CompressAI name)")
    N: int = setting(64, help="channel width N")
    M: int = setting(96, help="latent width M")
    metric: str = setting("mse", choices=tuple(LAMBDAS), help="distortion the RD loss measures")
    #: RD trade-off; None: CompressAI's λ for quality 3 of ``metric`` (filled in on construction).
    lmbda: float | None = setting(None, help="RD trade-off λ", default_text="CompressAI's quality-3 λ for --metric")
    steps: int = setting(10000, help="training steps")
    #: (fraction of steps, factor): the learning rate is multiplied by factor from that point on.
    lr_drops: list[tuple[float, float]] = setting(
        factory=lambda: [(0.8, 0.3), (0.95, 0.3)], flags=("--lr-drop",), metavar="FRACTION:FACTOR",
        help="multiply the lr by FACTOR from FRACTION of the steps on (repeatable)")
    val_every: int = setting(1000, help="validate (clean RD on held-out photos, real bitstreams) every this many steps")
    val_crop: int = setting(256, help="validation centre crop side in pixels")
    checkpoint_every: int = setting(200, help="write OUT/last.pth.tar every this many steps")
    init_from: str | None = setting(None, help="warm start from a checkpoint or model spec: copy every tensor whose "
                                    "name and shape match (a narrower model fills the leading slice)",
                                    default_text="random initialisation")
    threads: int | None = setting(None, help="torch CPU threads", default_text="torch's choice")

    def __post_init__(self) -> None:
        if self.lmbda is None:
            self.lmbda = LAMBDAS.get(self.metric, LAMBDAS["mse"])[3]

    def validate(self) -> None:
        """Raise :class:`RobustnicError` for settings no run can use."""
        get_architecture(self.architecture)
        if self.metric not in LAMBDAS:
            raise RobustnicError(f"metric must be one of {list(LAMBDAS)}, got {self.metric!r}")
        if self.metric == "ms-ssim" and self.patch_size <= 160:
            raise RobustnicError("MS-SSIM training needs patch_size > 160 (5 scales, 11-pixel window)")
        if self.patch_size % 64:
            raise RobustnicError("patch_size must be a multiple of 64")
        if self.steps < 1 or self.batch_size < 1:
            raise RobustnicError("steps and batch_size must be positive")

    def lr_at(self, step: int) -> float:
        """Learning rate at ``step`` (a pure function of the step: nothing to restore on resume)."""
        lr = self.lr
        for frac, factor in self.lr_drops:
            if step >= frac * self.steps:
                lr *= factor
        return lr


@dataclass
class FinetuneConfig(PatchTraining):
    """Everything that defines a fine-tuning run (written to ``OUT/finetune.json``)."""

    model: str = setting(DEFAULT_MODEL, flags=("--model", "-m"), help="model to start from: zoo spec or checkpoint")
    steps: int = setting(600, help="fine-tuning steps")
    lr_drops: list[tuple[float, float]] = setting(
        factory=lambda: [(0.8, 0.3)], flags=("--lr-drop",), metavar="FRACTION:FACTOR",
        help="multiply the lr by FACTOR from FRACTION of the steps on (repeatable)")
    lmbda: float | None = setting(None, help="RD trade-off λ",
                                  default_text="the model's own training λ (manifest or checkpoint), else CompressAI's")
    attack: str = setting("pgd", help=f"inner attack method ({', '.join(ATTACK_NAMES)})")
    attack_steps: int = setting(1, help="inner attack steps")
    budget: str = setting("psnr:30", help="budget trained against (psnr:DB, mse:TAU, linf:EPS, l2:EPS)")
    ramp_steps: int = setting(100, help="steps over which the budget grows from 0 (linear in MSE / radius)")
    adv_fraction: float = setting(0.5, help="share of each batch that is attacked (the rest stays clean)")
    standin: str = setting("none", choices=STANDINS, help="quantisation stand-in of the inner attack")
    attack_reference: str = setting(
        "source", choices=REFERENCES,
        help="the inner attack pushes away from the source image or, as in the paper, the clean reconstruction")
    target: str = setting(
        "source", choices=FINETUNE_TARGETS,
        help="distortion against the clean source patch (the codec learns to drop the perturbation) or, as in "
             "the paper, against the codec's input")
    regularizer: str = setting(
        "none", choices=REGULARIZERS,
        help="penalty added to the RD loss: 'jacobian' = the codec's mean squared input-output gain "
             "(Frobenius norm of its Jacobian, one random projection per patch; one double backward, no "
             "inner attack: use it with --adv-fraction 0)")
    reg_weight: float = setting(10.0, help="weight of --regularizer in the loss (in the loss's units: λ·255²·MSE + bpp)")
    val_every: int = setting(100, help="validate (clean RD and an attack, real bitstreams) every this many steps")
    val_photos: list[str] = setting(factory=lambda: ["coffee", "chelsea"],
                                    help="held-out photo validated on (repeatable)")
    val_crop: int = setting(128, help="validation centre crop side in pixels")
    val_attack: str = setting("paper", help="validation attack method (at --budget)")
    val_attack_steps: int = setting(30, help="validation attack steps")
    checkpoint_every: int = setting(50, help="write OUT/last.pth.tar every this many steps")
    threads: int | None = setting(1, help="torch CPU threads", default_text="1")

    def validate(self) -> None:
        """Raise :class:`RobustnicError` for settings no run can use (parses the budget: imports torch)."""
        from robustnic.attacks.budget import parse_budget

        if self.attack not in ATTACK_NAMES or self.val_attack not in ATTACK_NAMES:
            raise RobustnicError(f"unknown attack {self.attack!r}/{self.val_attack!r}; choose from {', '.join(ATTACK_NAMES)}")
        parse_budget(self.budget)
        if self.target not in FINETUNE_TARGETS or self.attack_reference not in REFERENCES:
            raise RobustnicError(f"target and attack_reference must be 'input'/'source' and 'clean'/'source', "
                                 f"got {self.target!r} and {self.attack_reference!r}")
        if self.standin not in STANDINS:
            raise RobustnicError(f"unknown stand-in {self.standin!r}; choose from {', '.join(STANDINS)}")
        if self.regularizer not in REGULARIZERS or self.reg_weight < 0:
            raise RobustnicError(f"regularizer must be one of {', '.join(REGULARIZERS)} with a non-negative weight, "
                                 f"got {self.regularizer!r} ({self.reg_weight})")
        if not 0 <= self.adv_fraction <= 1:
            raise RobustnicError(f"adv_fraction must be in [0, 1], got {self.adv_fraction}")
        if self.attack_steps < 1 or self.ramp_steps < 0 or self.steps < 1:
            raise RobustnicError("steps and attack_steps must be positive, ramp_steps non-negative")

    #: Bookkeeping fields: a resumed run may change them (not part of :meth:`settings`).
    BOOKKEEPING = ("steps", "val_every", "checkpoint_every", "threads", "val_photos", "val_crop",
                   "val_attack", "val_attack_steps", "max_pixels")

    def settings(self) -> dict:
        """The settings a resumed run must share (all but bookkeeping)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in self.BOOKKEEPING}

    def train_config(self, source: dict) -> TrainConfig:
        """The :class:`TrainConfig` of this run, given the model's ``source`` settings (architecture,
        N, M, metric, lmbda: see :func:`robustnic.training.finetune.source_settings`)."""
        shared = {f.name: getattr(self, f.name) for f in fields(TrainConfig) if hasattr(self, f.name)}
        shared["lr_drops"] = [tuple(d) for d in self.lr_drops]
        shared["images"] = list(self.images)
        if self.lmbda is None:
            shared["lmbda"] = source["lmbda"]
        arch = {k: source[k] for k in ("architecture", "N", "M", "metric")}
        return TrainConfig(**shared, **arch, init_from=self.model)


# ----- command-line form ------------------------------------------------------------------------


@dataclass(frozen=True)
class CliOption:
    """The command-line option of one config field (built by :func:`cli_options`)."""

    name: str  #: the field's name
    flags: tuple[str, ...]
    help: str  #: help text, default included
    item: type  #: int, float, str or tuple (a ``FRACTION:FACTOR`` pair of floats)
    repeat: bool  #: a list field: the option is repeated once per item
    default: Any
    choices: tuple | None = None
    metavar: str | None = None

    @property
    def dest(self) -> str:
        """The argparse attribute the option is stored in (argparse's own rule: the first long flag)."""
        return next(f for f in self.flags if f.startswith("--"))[2:].replace("-", "_")

    def parse(self, text: str) -> Any:
        """One command-line value -> one item of the field."""
        if self.item is tuple:
            parts = text.split(":")
            if len(parts) != 2:
                raise ValueError(f"expected A:B, got {text!r}")
            return tuple(float(v) for v in parts)
        return self.item(text)

    def arguments(self, value: Any) -> list[str]:
        """The argv tokens that give the field ``value`` (nothing for None)."""
        items = value if self.repeat else [value]
        out: list[str] = []
        for item in items:
            if item is not None:
                out += [self.flags[0], ":".join(map(str, item)) if self.item is tuple else str(item)]
        return out


def _item_type(hint: Any) -> tuple[type, bool]:
    """(item type, repeated) of a field's type hint: ``int``, ``float | None``, ``list[str]``, ..."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is list:
        item, _ = _item_type(args[0])
        return item, True
    if origin is tuple:
        return tuple, False
    if args:  # X | None
        return _item_type(next(a for a in args if a is not type(None)))
    if hint in (int, float, str):
        return hint, False
    raise TypeError(f"no command-line form for type {hint!r}")


def _default_of(f: Field) -> Any:
    return f.default_factory() if f.default_factory is not MISSING else f.default


def _shown(option_default: Any, meta: dict, item: type) -> str:
    if meta["default_text"] is not None:
        return meta["default_text"]
    if isinstance(option_default, list):
        return " ".join(":".join(map(str, v)) if item is tuple else str(v) for v in option_default) or "none"
    return str(option_default)


def cli_options(cls: type) -> list[CliOption]:
    """The command-line options of a config dataclass, one per field: the class's own fields first (in
    their order), then the inherited ones (:class:`PatchTraining`)."""
    hints = typing.get_type_hints(cls)
    own = vars(cls).get("__annotations__", {})
    out = []
    for f in sorted(fields(cls), key=lambda f: f.name not in own):
        meta = f.metadata
        if not meta.get("cli", False):
            continue
        item, repeat = _item_type(hints[f.name])
        default = _default_of(f)
        out.append(CliOption(
            name=f.name, flags=meta["flags"] or ("--" + f.name.replace("_", "-"),),
            help=f"{meta['help']} (default: {_shown(default, meta, item)})", item=item, repeat=repeat,
            default=default, choices=meta["choices"], metavar=meta["metavar"],
        ))
    return out


def cli_arguments(config: Any, skip: tuple[str, ...] = ()) -> list[str]:
    """The argv options that give ``config``'s values (None and empty lists left out): with
    ``robustnic train`` / ``robustnic finetune`` and ``--out``, the command that reproduces it."""
    out: list[str] = []
    for option in cli_options(type(config)):
        if option.name not in skip:
            out += option.arguments(getattr(config, option.name))
    return out


__all__ = ["FINETUNE_TARGETS", "REGULARIZERS", "CliOption", "FinetuneConfig", "PatchTraining", "TrainConfig", "cli_arguments",
           "cli_options", "setting"]
