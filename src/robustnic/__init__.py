"""robustnic: measure and improve the adversarial robustness of learned image codecs.

Layers (each imports only downward): ``codecs`` (model zoo, checkpoints, real bitstreams,
classical codecs) -> ``attacks`` and ``defenses`` -> ``studies`` -> ``report`` and ``cli``.
``data``, ``metrics`` and ``utils`` are shared leaves.
"""

from robustnic.errors import (
    BitstreamError,
    BudgetError,
    CheckpointError,
    CodecLoadError,
    ImageError,
    RobustnicError,
)

__version__ = "0.2.0"

__all__ = [
    "BitstreamError",
    "BudgetError",
    "CheckpointError",
    "CodecLoadError",
    "ImageError",
    "RobustnicError",
    "__version__",
]
