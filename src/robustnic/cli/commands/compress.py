"""``robustnic compress IMG -o FILE`` and ``robustnic decompress FILE -o IMG``: real bitstreams."""

from __future__ import annotations

import argparse

from robustnic.cli.commands import help_of
from robustnic.cli.common import add_device, add_model
from robustnic.data.limits import DEFAULT_MAX_PIXELS
from robustnic.errors import BitstreamError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compress", help=help_of("compress"))
    p.add_argument("image", help="input image (any Pillow-readable file)")
    p.add_argument("--out", "-o", required=True, help="output bitstream file")
    add_model(p)
    p.add_argument("--defense", "-d", default="none",
                   help="encoder-side defense spec (refine, refine:steps=20:lr=0.01, ensemble, jpeg:q90+refine, ...); "
                        "the stream stays one of --model")
    add_device(p)
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="refuse larger images")
    p.set_defaults(func=run_compress)

    p = sub.add_parser("decompress", help=help_of("decompress"))
    p.add_argument("bitstream", help="input bitstream file")
    p.add_argument("--out", "-o", required=True, help="output image (PNG recommended)")
    p.add_argument("--model", "-m", default=None,
                   help="codec spec (default: found from the bitstream header among shipped models)")
    p.add_argument("--max-pixels", type=int, default=None,
                   help=f"refuse bitstreams declaring a larger image (default {DEFAULT_MAX_PIXELS:,})")
    add_device(p)
    p.set_defaults(func=run_decompress)


def run_compress(args: argparse.Namespace) -> int:
    from robustnic.codecs.zoo import load_codec
    from robustnic.data.images import load_image
    from robustnic.defenses import make_defense
    from robustnic.utils.io import atomic_write_bytes

    x = load_image(args.image, max_pixels=args.max_pixels)
    codec = make_defense(load_codec(args.model, device=args.device), args.defense)
    data = codec.compress(x)
    atomic_write_bytes(args.out, data)
    print(compress_summary(args.image, args.out, data, tuple(x.shape[-2:]), codec.name))
    return 0


def compress_summary(image: str, out: str, data: bytes, size: tuple[int, int], model: str) -> str:
    """What ``robustnic compress`` prints: sizes, and both rates, each labelled: bpp (payload) counts
    the entropy-coded strings (CompressAI's and ``eval``'s ``bpp``), bpp (file) the whole file with the
    container header (``eval``'s ``bpp-file``)."""
    from robustnic.codecs.base import payload_bits

    h, w = size
    bits = payload_bits(data)
    header = len(data) - bits // 8
    return (f"{image}: {w}x{h} -> {out}: {len(data)} bytes ({model})\n"
            f"  bpp (payload): {bits / (h * w):.4f}  the codec's coded strings, {bits // 8} bytes "
            "(CompressAI's bpp; eval's 'bpp')\n"
            f"  bpp (file):    {len(data) * 8 / (h * w):.4f}  the whole file, {header} bytes of container "
            "header included (eval's 'bpp-file')")


def run_decompress(args: argparse.Namespace) -> int:
    from robustnic.codecs.zoo import codec_for_bitstream, load_codec
    from robustnic.data.images import save_image

    try:
        with open(args.bitstream, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise BitstreamError(f"{args.bitstream}: cannot read ({exc.strerror or exc})") from None
    codec = load_codec(args.model, device=args.device) if args.model else codec_for_bitstream(data, args.device)
    x_hat = codec.decompress(data, max_pixels=args.max_pixels)
    save_image(x_hat, args.out)
    print(f"{args.bitstream} -> {args.out}: {x_hat.shape[-1]}x{x_hat.shape[-2]} ({codec.name})")
    return 0
