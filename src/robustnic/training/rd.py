"""Rate-distortion training of any zoo architecture, CompressAI-compatible and resumable.

Loss (CompressAI's ``RateDistortionLoss``): ``λ·255²·MSE + bpp`` or ``λ·(1 − MS-SSIM) + bpp``, with
bpp estimated from the latent likelihoods under additive-noise quantisation. The entropy
bottleneck's quantiles have their own auxiliary loss and optimizer. A checkpoint ``last.pth.tar``
(CompressAI's layout: ``state_dict``, ``optimizer``, ``aux_optimizer``, ...) is written atomically
every ``checkpoint_every`` steps; rerunning the same command resumes from it, continuing the same
random patch sequence.

Every step goes through one target hook, ``(net, batch, step) -> (input, target)``: the model is
trained on ``input`` and its distortion measured against ``target``. Plain training uses
:func:`identity_target`; adversarial fine-tuning (:mod:`robustnic.training.finetune`) attacks part of
the batch and measures against the clean patches.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch
from compressai.models.base import CompressionModel
from pytorch_msssim import ms_ssim
from tqdm.auto import tqdm

from robustnic.codecs.architectures import get_architecture
from robustnic.codecs.checkpoint import extract_state_dict, read_checkpoint_file, save_checkpoint
from robustnic.codecs.learned import LearnedCodec
from robustnic.data.photos import bundled_photos, center_crop, training_photo_paths
from robustnic.errors import RobustnicError
from robustnic.metrics import psnr
from robustnic.training.config import TrainConfig
from robustnic.training import distributed
from robustnic.training.data import PatchSampler
from robustnic.utils.runtime import resolve_device

#: A hook that may replace part of a training batch: (net, batch, step) -> batch.
Perturb = Callable[[CompressionModel, torch.Tensor, int], torch.Tensor]
#: The train step's hook: (net, sampled batch, step) -> (batch trained on, target of the distortion).
TargetHook = Callable[[CompressionModel, torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]


def identity_target(net: CompressionModel, batch: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain rate-distortion training: train on the batch, measure the distortion against it."""
    return batch, batch


def perturbed_target(perturb: Perturb) -> TargetHook:
    """A target hook from a ``perturb`` hook: train on the perturbed batch and measure against it."""

    def hook(net: CompressionModel, batch: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = perturb(net, batch, step)
        return x, x

    return hook


def rd_loss(out: dict, x: torch.Tensor, lmbda: float, metric: str = "mse") -> dict[str, torch.Tensor]:
    """CompressAI's rate-distortion loss on a forward output; returns loss, bpp, mse (and ms-ssim)."""
    num_pixels = x.shape[0] * x.shape[2] * x.shape[3]
    bpp = sum(torch.log(lk).sum() for lk in out["likelihoods"].values()) / (-math.log(2) * num_pixels)
    mse = torch.mean((out["x_hat"] - x) ** 2)
    terms = {"bpp": bpp, "mse": mse}
    if metric == "mse":
        terms["loss"] = lmbda * 255**2 * mse + bpp
    else:
        terms["ms-ssim"] = ms_ssim(out["x_hat"].clamp(0, 1), x, data_range=1.0)
        terms["loss"] = lmbda * (1 - terms["ms-ssim"]) + bpp
    return terms


def _split_parameters(net: torch.nn.Module) -> tuple[list, list]:
    main = [p for n, p in net.named_parameters() if not n.endswith(".quantiles")]
    aux = [p for n, p in net.named_parameters() if n.endswith(".quantiles")]
    return main, aux


def warm_start(net: torch.nn.Module, source: str, widen: bool = True) -> tuple[int, int]:
    """Copy every tensor of a checkpoint (or shipped model spec) whose name and shape match.

    With ``widen`` (default), a parameter of the same rank but a wider shape (a model with larger N or
    M warm-started from a narrower one) receives the source in its leading slice; the input-channel
    slice of convolutions that the source does not have is zeroed, so the wider model starts as the
    same function as the source (Net2Net-style) and its new channels grow from there. Exact for the
    factorized and scale-hyperprior models; where a layer's output is split in halves (the means and
    scales of mbt2018-mean / mbt2018) the wider model starts close to, not at, the source. Returns
    (tensors copied, tensors in ``net``).
    """
    if Path(source).is_file():
        state = extract_state_dict(read_checkpoint_file(source), source)
    else:
        from robustnic.codecs.zoo import load_codec

        state = load_codec(source).net.state_dict()
    own = net.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if widen:
        parameters = dict(net.named_parameters())
        for name, value in state.items():
            if name in matched or name not in parameters:
                continue
            target = own[name]
            if target.dim() != value.dim() or any(t < s for t, s in zip(target.shape, value.shape)):
                continue
            wider = target.clone()
            module = net.get_submodule(name.rsplit(".", 1)[0]) if "." in name else net
            if name.endswith("weight") and isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                in_dim = 0 if isinstance(module, torch.nn.ConvTranspose2d) else 1
                wider.narrow(in_dim, value.shape[in_dim], target.shape[in_dim] - value.shape[in_dim]).zero_()
            wider[tuple(slice(0, n) for n in value.shape)] = value.to(wider.dtype)
            matched[name] = wider
    own.update(matched)
    net.load_state_dict(own)
    return len(matched), len(own)


class Trainer:
    """Runs (or resumes) one training run in ``out_dir``.

    ``target`` is the train step's hook (default :func:`identity_target`); ``perturb``, a hook that only
    replaces the batch, is the older form of it (``perturbed_target(perturb)``).

    Started by ``torchrun`` it trains data-parallel (:mod:`robustnic.training.distributed`):
    ``batch_size`` is per process, gradients are averaged over ranks, rank 0 alone validates,
    checkpoints and logs; ``rank_info`` says where this process stands.

    >>> trainer = Trainer(TrainConfig(N=16, M=24, steps=10), "runs/tiny")   # doctest: +SKIP
    >>> trainer.fit()                                                        # doctest: +SKIP
    """

    CHECKPOINT = "last.pth.tar"

    def __init__(
        self,
        config: TrainConfig,
        out_dir: str | Path,
        perturb: Perturb | None = None,
        device: str | torch.device = "cpu",
        sampler: PatchSampler | None = None,
        val_images: dict[str, torch.Tensor] | None = None,
        progress: bool = True,
        target: TargetHook | None = None,
    ):
        config.validate()
        if perturb is not None and target is not None:
            raise ValueError("give either perturb or target, not both")
        self.config, self.out_dir, self.perturb = config, Path(out_dir), perturb
        self.target = target or (perturbed_target(perturb) if perturb is not None else identity_target)
        self.rank_info, self.device = distributed.setup(resolve_device(device))
        self.progress = progress and self.rank_info.is_main
        if config.threads:
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        self.net = get_architecture(config.architecture).build(config.N, config.M).to(self.device)
        self.init_report = warm_start(self.net, config.init_from) if config.init_from else None
        self.net.requires_grad_(True)
        main, aux = _split_parameters(self.net)
        self.optimizer = torch.optim.Adam(main, lr=config.lr)
        self.aux_optimizer = torch.optim.Adam(aux, lr=config.aux_lr)
        self.sampler = sampler or PatchSampler(
            config.images or [str(p) for p in training_photo_paths()], config.patch_size, seed=config.seed,
            max_pixels=config.max_pixels,
        )
        self.val_images = val_images if val_images is not None else bundled_photos(crop=config.val_crop)
        self.step, self.elapsed, self.history = 0, 0.0, []
        self.resumed = self._resume()
        if self.rank_info.enabled:
            distributed.broadcast_module(self.net)
            if not self.rank_info.is_main:  # each rank its own quantisation noise
                torch.manual_seed(config.seed + 7919 * self.rank_info.rank + self.step)

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / self.CHECKPOINT

    # ----- checkpoints -------------------------------------------------------------------
    def _resume(self) -> bool:
        if not self.checkpoint_path.is_file():
            return False
        ckpt = read_checkpoint_file(self.checkpoint_path)
        saved = ckpt.get("config", {})
        for key in ("architecture", "N", "M", "metric"):
            if saved.get(key) != getattr(self.config, key):
                raise RobustnicError(
                    f"{self.checkpoint_path} was trained with {key}={saved.get(key)!r}, not "
                    f"{getattr(self.config, key)!r}: use another --out folder"
                )
        self.net.load_state_dict(ckpt["state_dict"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.aux_optimizer.load_state_dict(ckpt["aux_optimizer"])
        self.sampler.generator.set_state(ckpt["sampler_rng"])
        torch.set_rng_state(ckpt["torch_rng"])
        self.step, self.elapsed = int(ckpt["step"]), float(ckpt["elapsed"])
        self.history = json.loads(ckpt["history"])
        return True

    def save(self) -> None:
        """Write ``last.pth.tar`` atomically (CompressAI layout plus what resuming needs); rank 0 only."""
        if not self.rank_info.is_main:
            return
        save_checkpoint(
            {
                "state_dict": self.net.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "aux_optimizer": self.aux_optimizer.state_dict(),
                "epoch": self.step,
                "step": self.step,
                "elapsed": self.elapsed,
                "config": json.loads(json.dumps(asdict(self.config))),
                "sampler_rng": self.sampler.generator.get_state(),
                "torch_rng": torch.get_rng_state(),
                "history": json.dumps(self.history),
            },
            self.checkpoint_path,
        )

    # ----- one step ------------------------------------------------------------------------
    #: True when :meth:`penalties` differentiates through the input (the batch then requires grad).
    needs_input_grad = False

    def penalties(self, x: torch.Tensor, out: dict) -> dict[str, tuple[float, torch.Tensor]]:
        """Terms added to the loss, ``name -> (weight, value)``; none in plain training (a subclass's hook)."""
        return {}

    def train_step(self) -> dict[str, float]:
        """Sample a batch, pass it through the target hook, take one RD step and one auxiliary step."""
        cfg = self.config
        rank = self.rank_info
        batch = self.sampler.sample(cfg.batch_size, rank.rank, rank.world_size)
        x, target = self.target(self.net, batch.to(self.device), self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = cfg.lr_at(self.step)
        self.net.train()
        self.optimizer.zero_grad(set_to_none=True)
        self.aux_optimizer.zero_grad(set_to_none=True)
        if self.needs_input_grad:
            x = x.detach().requires_grad_(True)
        out = self.net(x)
        terms = rd_loss(out, target, cfg.lmbda, cfg.metric)
        for name, (weight, value) in self.penalties(x, out).items():
            terms[name] = value
            terms["loss"] = terms["loss"] + weight * value
        terms["loss"].backward()
        distributed.average_gradients(self.optimizer.param_groups[0]["params"], rank.world_size)
        if cfg.clip_max_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.optimizer.param_groups[0]["params"], cfg.clip_max_norm)
        self.optimizer.step()
        aux_loss = self.net.aux_loss()
        aux_loss.backward()
        self.aux_optimizer.step()
        self.step += 1
        values = torch.stack([v.detach() for v in terms.values()])
        if rank.enabled:  # log the global batch's terms, not this rank's slice
            torch.distributed.all_reduce(values)
            values /= rank.world_size
        return dict(zip(terms, values.tolist())) | {"aux": aux_loss.item()}

    def validate(self) -> dict[str, float]:
        """Clean RD on the validation photos, from real bitstreams (a frozen copy of the model)."""
        codec = LearnedCodec(copy.deepcopy(self.net).cpu(), name="validation")
        codec.net.update(force=True)
        codec.refresh()
        bpps, psnrs = [], []
        for x in self.val_images.values():
            coded = codec.roundtrip(center_crop(x, self.config.val_crop))
            bpps.append(coded.bpp)
            psnrs.append(psnr(x if x.shape == coded.x_hat.shape else center_crop(x, self.config.val_crop), coded.x_hat))
        return {"bpp": sum(bpps) / len(bpps), "psnr-rgb": sum(psnrs) / len(psnrs)}

    def fit(self, time_limit: float | None = None) -> dict:
        """Train until ``config.steps``; checkpoint, validate and show progress on the way.

        ``time_limit`` (seconds of wall time): stop earlier, after a checkpoint, once it is spent (a
        bounded slot on a lent GPU, a job array's time limit); rerunning resumes. The result's
        ``finished`` says whether ``config.steps`` was reached."""
        cfg = self.config
        deadline = None if time_limit is None else time.monotonic() + time_limit
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not self.progress, desc=f"train {cfg.architecture}")
        running: dict[str, float] = {}
        while self.step < cfg.steps:
            t0 = time.perf_counter()
            terms = self.train_step()
            self.elapsed += time.perf_counter() - t0
            running = {k: 0.98 * running.get(k, v) + 0.02 * v for k, v in terms.items()}
            bar.update(1)
            bar.set_postfix(loss=f"{running['loss']:.3f}", bpp=f"{running['bpp']:.3f}",
                            psnr=f"{-10 * math.log10(max(running['mse'], 1e-10)):.2f}")
            if (self.step % cfg.val_every == 0 or self.step == cfg.steps) and self.rank_info.is_main:
                self.history.append({"step": self.step, "train": running, "val": self.validate(),
                                     "elapsed": self.elapsed})
                bar.write(json.dumps(self.history[-1]))
            if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                self.save()
            if (deadline is not None and self.step < cfg.steps
                    and distributed.any_rank(time.monotonic() > deadline, self.device)):
                self.save()
                break
        bar.close()
        return {"step": self.step, "elapsed": self.elapsed, "history": self.history, "finished": self.step >= cfg.steps}
