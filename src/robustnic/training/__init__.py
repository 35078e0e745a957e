"""Rate-distortion training (``robustnic train``), adversarial fine-tuning (``robustnic finetune``) and
export of shippable models.

The names below are imported from their submodules on first use (``robustnic.training.config``
needs no torch; see :mod:`robustnic._lazy`).
"""

from robustnic._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "robustnic.training.config": ("FinetuneConfig", "TrainConfig"),
    "robustnic.training.data": ("PatchSampler",),
    "robustnic.training.export": ("export_model",),
    "robustnic.training.finetune": ("AdversarialPerturb", "FinetuneTrainer", "finetune"),
    "robustnic.training.rd": ("Trainer", "identity_target", "rd_loss"),
})
