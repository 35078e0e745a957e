"""Codecs: the model zoo, safe checkpoints, real bitstreams, and classical baselines.

>>> from robustnic.codecs import load_codec
>>> codec = load_codec("hyperprior-small:q2")        # doctest: +SKIP
>>> coded = codec.roundtrip(x)                      # doctest: +SKIP
>>> coded.bpp, coded.x_hat.shape                    # doctest: +SKIP
"""

from robustnic.codecs.architectures import ARCHITECTURES, LAMBDAS, get_architecture, infer_architecture
from robustnic.codecs.base import STANDINS, Codec, CodecOutput, Coded, payload_bits
from robustnic.codecs.classical import ClassicalCodec
from robustnic.codecs.learned import LearnedCodec, quantisation_standin
from robustnic.codecs.transforms import NUM_TRANSFORMS, apply_transform, inverse_transform
from robustnic.codecs.zoo import DEFAULT_MODEL, list_models, load_checkpoint_codec, load_codec, read_manifest

__all__ = [
    "ARCHITECTURES",
    "DEFAULT_MODEL",
    "LAMBDAS",
    "NUM_TRANSFORMS",
    "STANDINS",
    "ClassicalCodec",
    "Codec",
    "CodecOutput",
    "Coded",
    "LearnedCodec",
    "apply_transform",
    "get_architecture",
    "infer_architecture",
    "inverse_transform",
    "list_models",
    "load_checkpoint_codec",
    "load_codec",
    "payload_bits",
    "quantisation_standin",
    "read_manifest",
]
