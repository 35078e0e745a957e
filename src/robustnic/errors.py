"""The project's own exceptions. The CLI turns every one of them into a one-line message and exit 2."""


class RobustnicError(Exception):
    """Base class of every error robustnic raises on purpose (bad input, not a bug)."""


class ImageError(RobustnicError):
    """An image could not be read, or is not usable (too small, too large, not an image)."""


class BitstreamError(RobustnicError):
    """A bitstream is truncated, corrupted, or was written by another model."""


class CheckpointError(RobustnicError):
    """A checkpoint is unsafe (pickled code), unreadable, or does not fit the architecture."""


class CodecLoadError(RobustnicError):
    """A codec name could not be resolved or its weights could not be obtained."""


class BudgetError(RobustnicError):
    """A perturbation budget is malformed or impossible to satisfy."""


class LabelDeprecationWarning(FutureWarning):
    """A shipped model was named by its label from before robustnic 0.2, or by a label whose meaning
    changed then (see :data:`robustnic.codecs.zoo.RELABELED_IN_0_2`). The CLI prints it as one line."""
