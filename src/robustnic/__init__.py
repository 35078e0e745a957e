"""robustnic: measure and improve the adversarial robustness of learned image codecs.

Layers, each importing only from those before it (``tests/test_architecture.py``): ``errors`` ->
``utils`` -> ``data``, ``metrics`` -> ``codecs`` (specs, model zoo, checkpoints, real bitstreams,
classical codecs) -> ``attacks`` -> ``defenses`` -> ``training``, ``studies`` -> ``report`` -> ``app``
-> ``cli``; ``testing`` holds helpers for tests.
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
