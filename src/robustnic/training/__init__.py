"""Rate-distortion training (``robustnic train``) and export of shippable models."""

from robustnic.training.data import PatchSampler
from robustnic.training.export import export_model
from robustnic.training.rd import TrainConfig, Trainer, rd_loss

__all__ = ["PatchSampler", "TrainConfig", "Trainer", "export_model", "rd_loss"]
