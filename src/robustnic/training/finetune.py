"""Adversarial fine-tuning of a learned codec (Chen & Ma, TCSVT 2023, Sec. "Adversarial finetuning").

Start from any zoo model; at every training step attack the *current* model on a fraction of the
batch (the rest stays clean, as in the paper's earlier version), with a budget ramped up from 0
over the first steps, then take CompressAI's rate-distortion step on the mixed batch (plus the
entropy bottleneck's auxiliary step). The distortion target is, by default, the clean patch the
adversarial one came from (``target="source"``: the codec learns to drop the perturbation), or the
codec's input as in the paper (``target="input"``); the inner attack pushes the reconstruction
away from the source by default (``attack_reference="source"``) or, as in the paper, away from
the clean reconstruction (``"clean"``).

The paper runs a 300-step attack inside every training step. Here the inner attack is cheap by
default - one step of PGD from a random start in the budget ball (Madry et al., ICLR 2018; the
"fast adversarial training" of Wong et al., ICLR 2020) - and ``benchmarks/finetune_cost.py``
measures what that costs in robustness against longer inner attacks (PGD-1 and PGD-3 reached the
same robustness after the same number of steps, at half the time). (Re-using perturbations across
steps, as "free" adversarial training does, does not apply here: every step samples new patches.)

It is :class:`robustnic.training.rd.Trainer` with one change, its target hook
(:meth:`AdversarialPerturb.target`): the train step is the same. Checkpoints are
CompressAI-compatible (``load_codec("runs/finetune/x/last.pth.tar")`` works) and a rerun of the
same command resumes. Validation reports clean RD on held-out photos from real bitstreams and the
reconstruction PSNR under a stronger attack, verified on real bitstreams too.

>>> cfg = FinetuneConfig(model="hyperprior-small:q3", steps=300, budget="psnr:30")   # doctest: +SKIP
>>> finetune(cfg, "runs/finetune/hyperprior-small-q3", export_to="robust.pth.tar")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import copy
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

import torch
from compressai.models.base import CompressionModel

from robustnic.attacks import L2, MSE, AttackSettings, Budget, Linf, attack_and_verify, make_attack, parse_budget
from robustnic.codecs.architectures import LAMBDAS, widths_of
from robustnic.codecs.checkpoint import read_checkpoint_file
from robustnic.codecs.learned import LearnedCodec
from robustnic.codecs.zoo import load_codec, read_manifest
from robustnic.data.photos import bundled_photos
from robustnic.errors import RobustnicError
from robustnic.training.config import FINETUNE_TARGETS, FinetuneConfig
from robustnic.training.export import export_model
from robustnic.training.rd import Trainer
from robustnic.training.regularizers import jacobian_penalty
from robustnic.utils.io import atomic_write_text
from robustnic.utils.runtime import resolve_device

TARGETS = FINETUNE_TARGETS  # FinetuneConfig.target values
#: What the training run's sidecar file is called (the fine-tuning settings, for resuming).
SETTINGS_FILE = "finetune.json"


def source_settings(model: str) -> dict:
    """Architecture, widths, metric, quality and training λ of the model to start from."""
    codec = load_codec(model)
    if not isinstance(codec, LearnedCodec) or codec.arch is None:
        raise RobustnicError(f"{model!r} is not a CompressAI model robustnic can fine-tune")
    N, M = widths_of(codec.arch.name, codec.net.state_dict())
    lmbda = None
    row = read_manifest().get(model)
    if row is not None:
        lmbda = row.info.get("lambda", (row.info.get("config") or {}).get("lmbda"))
    elif Path(model).is_file():
        lmbda = (read_checkpoint_file(model).get("config") or {}).get("lmbda")
    metric = codec.metric or "mse"
    if lmbda is None:
        lmbda = LAMBDAS[metric].get(codec.quality, LAMBDAS[metric][3])
    return {"architecture": codec.arch.name, "N": int(N), "M": int(M), "metric": metric,
            "quality": codec.quality, "lmbda": float(lmbda)}


def ramped_budget(budget: Budget, fraction: float) -> Budget | None:
    """``budget`` shrunk to ``fraction`` of its size (MSE for PSNR/MSE balls, the radius otherwise); an
    L∞ cap of a PSNR/MSE budget is kept as it is."""
    fraction = min(1.0, max(0.0, fraction))
    if budget.kind in ("psnr", "mse"):
        return MSE(budget.tau * fraction, linf_cap=budget.linf_cap) if fraction > 0 else None
    if fraction <= 0:
        return None
    return Linf(budget.eps * fraction) if budget.kind == "linf" else L2(budget.eps * fraction)


@contextlib.contextmanager
def input_gradients_only(net: torch.nn.Module) -> Iterator[None]:
    """Freeze the parameters while the inner attack differentiates with respect to the input."""
    flags = [p.requires_grad for p in net.parameters()]
    net.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(net.parameters(), flags):
            p.requires_grad_(flag)


class AdversarialPerturb:
    """Attack the live model on part of a training batch.

    Called as ``hook(net, batch, step)`` it returns the batch with its first
    ``round(adv_fraction · B)`` patches replaced by their adversarial versions (the patches are
    random, so which ones does not matter); :meth:`target` is the same as the train step's target
    hook. :attr:`last` keeps the clean batch and what the step did.
    """

    def __init__(self, config: FinetuneConfig):
        self.config = config
        self.budget = parse_budget(config.budget)
        self._codec: LearnedCodec | None = None
        self.last: dict = {}

    def budget_at(self, step: int) -> Budget | None:
        """The budget used at training step ``step`` (None while it is still zero)."""
        ramp = self.config.ramp_steps
        return ramped_budget(self.budget, 1.0 if ramp == 0 else (step + 1) / ramp)

    def codec_for(self, net: CompressionModel) -> LearnedCodec:
        """The live model as a codec (parameters not frozen; built once)."""
        if self._codec is None or self._codec.net is not net:
            self._codec = LearnedCodec(net, name="finetuning", freeze=False, device=next(net.parameters()).device)
        return self._codec

    def __call__(self, net: CompressionModel, batch: torch.Tensor, step: int) -> torch.Tensor:
        cfg = self.config
        n_adv = round(cfg.adv_fraction * batch.shape[0])
        budget = self.budget_at(step)
        self.last = {"clean": batch, "n_adv": 0, "attack_time": 0.0, "budget_mse": 0.0}
        if n_adv == 0 or budget is None or not budget.smallest_change_fits(batch[0].numel()):
            return batch
        codec = self.codec_for(net)
        t0 = time.perf_counter()
        was_training = net.training
        with input_gradients_only(net):
            atk = make_attack(cfg.attack, codec, budget=budget, steps=cfg.attack_steps, standin=cfg.standin,
                              reference=cfg.attack_reference, seed=cfg.seed * 1_000_003 + step)
            x_adv = atk(batch[:n_adv])
        net.train(was_training)
        out = torch.cat([x_adv.to(batch), batch[n_adv:]])
        self.last.update(n_adv=n_adv, attack_time=time.perf_counter() - t0,
                         budget_mse=float(((x_adv - batch[:n_adv]) ** 2).mean()))
        return out

    def target(self, net: CompressionModel, batch: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The train step's hook: (the attacked batch, the clean batch or, with ``target="input"``, itself)."""
        x = self(net, batch, step)
        return x, (batch if self.config.target == "source" else x)


class FinetuneTrainer(Trainer):
    """:class:`Trainer` with the adversarial target hook, attacked validation, and checkpoints
    whose entropy-coder tables match their weights."""

    def __init__(self, config: FinetuneConfig, out_dir: str | Path, device: str | torch.device = "cpu",
                 sampler=None, val_images: dict[str, torch.Tensor] | None = None, progress: bool = True):
        config.validate()
        device = resolve_device(device)  # fail fast, before the source model is read
        self.finetune_config = config
        self.source = source_settings(config.model)
        if val_images is None:
            val_images = bundled_photos(config.val_photos, crop=config.val_crop)
        self._check_settings(Path(out_dir), config)
        self.adversary = AdversarialPerturb(config)
        super().__init__(config.train_config(self.source), out_dir, target=self.adversary.target, device=device,
                         sampler=sampler, val_images=val_images, progress=progress)
        self._write_settings(Path(out_dir), config)  # only once the images were read: nothing left behind on refusal
        self.val_batch = torch.cat(list(val_images.values()))

    @staticmethod
    def _check_settings(out_dir: Path, config: FinetuneConfig) -> None:
        """Refuse to resume a run in ``out_dir`` that was started with other settings."""
        path = out_dir / SETTINGS_FILE
        settings = json.loads(json.dumps(config.settings()))
        if path.is_file():
            saved = json.loads(path.read_text())
            defaults = json.loads(json.dumps(FinetuneConfig().settings()))  # settings added since the run began
            diff = sorted(k for k in settings if saved.get(k, defaults.get(k)) != settings[k])
            if diff:
                raise RobustnicError(
                    f"{out_dir} holds a fine-tuning run with other settings ({', '.join(diff)}): use another --out"
                )

    @staticmethod
    def _write_settings(out_dir: Path, config: FinetuneConfig) -> None:
        path = out_dir / SETTINGS_FILE
        if not path.is_file():
            out_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps(config.settings(), indent=2) + "\n")

    @property
    def needs_input_grad(self) -> bool:  # type: ignore[override]
        return self.finetune_config.regularizer == "jacobian"

    def penalties(self, x: torch.Tensor, out: dict) -> dict[str, tuple[float, torch.Tensor]]:
        """The ``--regularizer`` term (:mod:`robustnic.training.regularizers`), weighted by ``--reg-weight``."""
        cfg = self.finetune_config
        if cfg.regularizer == "jacobian":
            return {"jacobian": (cfg.reg_weight, jacobian_penalty(x, out["x_hat"]))}
        return {}

    def train_step(self) -> dict[str, float]:
        """:meth:`Trainer.train_step`, plus what the inner attack did (patches attacked, time, MSE)."""
        terms = super().train_step()
        last = self.adversary.last
        return terms | {"n_adv": float(last["n_adv"]), "attack_time": last["attack_time"],
                        "budget_mse": last["budget_mse"]}

    def save(self) -> None:
        """Checkpoint with up-to-date coder tables, so ``load_codec(path)`` codes with this model."""
        if not self.rank_info.is_main:
            return
        self.net.update(force=True)
        super().save()

    def validate(self) -> dict[str, float]:
        """Clean RD (real bitstreams) and the attacked reconstruction PSNR (real bitstreams; per
        image the worse of the attacks away from the clean reconstruction and from the source)."""

        val = super().validate()
        cfg = self.finetune_config
        codec = LearnedCodec(copy.deepcopy(self.net).cpu(), name="validation")
        codec.net.update(force=True)
        codec.refresh()
        settings = [AttackSettings(cfg.val_attack, cfg.budget, steps=cfg.val_attack_steps, reference=reference, seed=0)
                    for reference in ("clean", "source")]
        rows = attack_and_verify(codec, self.val_batch, settings).rows
        n = len(rows)
        return val | {
            "attack": f"{cfg.val_attack}x{cfg.val_attack_steps}@{cfg.budget}",
            "psnr-clean": sum(r["psnr-clean"] for r in rows) / n,
            "psnr-attacked": sum(r["psnr-out"] for r in rows) / n,
            "psnr-drop": sum(r["psnr-drop"] for r in rows) / n,
        }


def finetune(
    config: FinetuneConfig,
    out_dir: str | Path,
    device: str | torch.device = "cpu",
    export_to: str | Path | None = None,
    progress: bool = True,
    **trainer_kwargs,
) -> dict:
    """Run (or resume) adversarial fine-tuning in ``out_dir``; optionally export the result.

    Returns the run's summary (``step``, ``elapsed``, ``history`` of validations, ``checkpoint``)
    plus, with ``export_to``, the exported model's ``export`` info (architecture, widths, sha256).
    """
    trainer = FinetuneTrainer(config, out_dir, device=device, progress=progress, **trainer_kwargs)
    result = trainer.fit()
    result |= {"checkpoint": str(trainer.checkpoint_path), "resumed": trainer.resumed,
               "source": trainer.source, "settings": asdict(config)}
    if export_to is not None and trainer.rank_info.is_main:
        result["export"] = export_model(trainer.checkpoint_path, export_to)
    return result


__all__ = ["SETTINGS_FILE", "AdversarialPerturb", "FinetuneConfig", "FinetuneTrainer", "finetune",
           "input_gradients_only", "ramped_budget", "source_settings"]
