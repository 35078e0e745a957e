"""What defines a training run: :class:`TrainConfig` (rate-distortion training) and
:class:`FinetuneConfig` (adversarial fine-tuning, :mod:`robustnic.defenses.finetune`).

Both are plain dataclasses importable without torch or compressai: the CLI takes its option
defaults from them. :mod:`robustnic.training.rd` and :mod:`robustnic.defenses.finetune` re-export them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from robustnic.attacks.registry import ATTACK_NAMES, REFERENCES
from robustnic.codecs.architectures import LAMBDAS, get_architecture
from robustnic.codecs.options import DEFAULT_MODEL, STANDINS
from robustnic.errors import RobustnicError

#: What fine-tuning measures the distortion against: the codec's ``input`` or the clean ``source``.
FINETUNE_TARGETS = ("input", "source")


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved inside every checkpoint)."""

    architecture: str = "bmshj2018-hyperprior"
    N: int = 64
    M: int = 96
    metric: str = "mse"
    lmbda: float = LAMBDAS["mse"][3]
    steps: int = 10000
    batch_size: int = 8
    patch_size: int = 128
    lr: float = 1e-4
    aux_lr: float = 1e-3
    #: (fraction of steps, factor): the learning rate is multiplied by factor from that point on.
    lr_drops: list[tuple[float, float]] = field(default_factory=lambda: [(0.8, 0.3), (0.95, 0.3)])
    clip_max_norm: float = 1.0
    seed: int = 0
    images: list[str] = field(default_factory=list)  # empty: robustnic's training photos
    val_every: int = 1000
    val_crop: int = 256
    checkpoint_every: int = 200
    init_from: str | None = None  # warm start: copy every tensor whose name and shape match
    threads: int | None = None
    max_pixels: int | None = None  # refuse larger training images (default: the loader's limit)

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
class FinetuneConfig:
    """Everything that defines a fine-tuning run (written to ``OUT/finetune.json``)."""

    #: The model to start from: a zoo spec (``hyperprior-small:q3``) or a checkpoint path.
    model: str = DEFAULT_MODEL
    steps: int = 600
    batch_size: int = 8
    patch_size: int = 128
    lr: float = 1e-4
    aux_lr: float = 1e-3
    #: (fraction of steps, factor) learning-rate drops, as in :class:`TrainConfig`.
    lr_drops: list[tuple[float, float]] = field(default_factory=lambda: [(0.8, 0.3)])
    #: RD trade-off; None: the model's own training λ (manifest or checkpoint), else CompressAI's.
    lmbda: float | None = None
    #: The inner attack (a name of :data:`robustnic.attacks.ATTACKS`) and its number of steps.
    attack: str = "pgd"
    attack_steps: int = 1
    #: The budget trained against, reached after ``ramp_steps`` (linear in MSE / radius from 0).
    budget: str = "psnr:30"
    ramp_steps: int = 100
    #: Share of each batch that is attacked (the rest stays clean).
    adv_fraction: float = 0.5
    #: Quantisation stand-in of the inner attack (``none`` as in the paper).
    standin: str = "none"
    #: The inner attack pushes away from the ``source`` image (what the reported PSNR measures) or,
    #: as in the paper, from the ``clean`` reconstruction.
    attack_reference: str = "source"
    #: Distortion against the clean ``source`` patch (the codec learns to drop the perturbation) or,
    #: as in the paper, against the codec's ``input``.
    target: str = "source"
    clip_max_norm: float = 1.0
    seed: int = 0
    images: list[str] = field(default_factory=list)
    #: Validation: every ``val_every`` steps, clean RD on ``val_photos`` centre crops of
    #: ``val_crop`` px and a ``val_attack_steps``-step ``val_attack`` at ``budget``.
    val_every: int = 100
    val_photos: list[str] = field(default_factory=lambda: ["coffee", "chelsea"])
    val_crop: int = 128
    val_attack: str = "paper"
    val_attack_steps: int = 30
    checkpoint_every: int = 50
    threads: int | None = 1
    #: Refuse training images larger than this many pixels (None: the image loader's limit).
    max_pixels: int | None = None

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
        if not 0 <= self.adv_fraction <= 1:
            raise RobustnicError(f"adv_fraction must be in [0, 1], got {self.adv_fraction}")
        if self.attack_steps < 1 or self.ramp_steps < 0 or self.steps < 1:
            raise RobustnicError("steps and attack_steps must be positive, ramp_steps non-negative")

    def settings(self) -> dict:
        """The settings a resumed run must share (all but bookkeeping)."""
        skip = {"steps", "val_every", "checkpoint_every", "threads", "val_photos", "val_crop",
                "val_attack", "val_attack_steps", "max_pixels"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}


__all__ = ["FINETUNE_TARGETS", "FinetuneConfig", "TrainConfig"]
