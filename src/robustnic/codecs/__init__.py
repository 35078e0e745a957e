"""Codecs: the model zoo, safe checkpoints, real bitstreams, and classical baselines.

>>> from robustnic.codecs import load_codec
>>> codec = load_codec("hyperprior-small:q3")        # doctest: +SKIP
>>> coded = codec.roundtrip(x)                      # doctest: +SKIP
>>> coded.bpp, coded.x_hat.shape                    # doctest: +SKIP
>>> from robustnic.codecs import parse_codec_spec   # one grammar for loading and fingerprints
>>> parse_codec_spec("file:runs/x/model.weights").kind
'file'

The names below are imported from their submodules on first use (torch is not imported by
``import robustnic.codecs`` itself; see :mod:`robustnic._lazy`).
"""

from robustnic._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "robustnic.codecs.architectures": ("ARCHITECTURES", "LAMBDAS", "get_architecture", "infer_architecture"),
    "robustnic.codecs.options": ("CLASSICAL_CODECS", "DEFAULT_MODEL", "STANDINS"),
    "robustnic.codecs.spec": ("CodecSpec", "SPEC_KINDS", "parse_codec_spec"),
    "robustnic.codecs.base": ("Codec", "CodecOutput", "Coded", "payload_bits"),
    "robustnic.codecs.classical": ("ClassicalCodec",),
    "robustnic.codecs.learned": ("LearnedCodec", "quantisation_standin"),
    "robustnic.codecs.transforms": ("NUM_TRANSFORMS", "apply_transform", "inverse_transform"),
    "robustnic.codecs.zoo": ("list_models", "load_checkpoint_codec", "load_codec", "read_manifest", "weights_sha256"),
})
