"""Codec-layer names that command-line options need, importable without torch or compressai."""

#: The model every command uses when none is named (a model robustnic ships).
DEFAULT_MODEL = "hyperprior-small:q3"

#: Quantisation stand-ins for the differentiable forward (see :meth:`robustnic.codecs.Codec.forward`).
STANDINS = ("none", "noise", "ste")

#: Classical codecs a spec can name (``jpeg:q75``); the keys of
#: :data:`robustnic.codecs.classical.CLASSICAL_FORMATS`, listed here so that specs parse without torch.
CLASSICAL_CODECS = ("jpeg", "webp")
