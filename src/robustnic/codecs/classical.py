"""JPEG and WebP through Pillow, behind the same codec interface as the learned models.

Their ``forward`` runs the real codec and passes gradients straight through (BPDA), so attacks
and purification defenses can be composed with them.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from robustnic.codecs import container
from robustnic.codecs.base import Codec, CodecOutput
from robustnic.data.images import check_image_tensor, to_uint8
from robustnic.errors import BitstreamError

#: format name -> (container code, Pillow format, default quality)
CLASSICAL_FORMATS: dict[str, tuple[int, str, int]] = {
    "jpeg": (container.CODEC_JPEG, "JPEG", 75),
    "webp": (container.CODEC_WEBP, "WEBP", 75),
}


class ClassicalCodec(Codec):
    """JPEG or WebP at a quality (0-100), with Pillow's default settings (4:2:0 chroma)."""

    differentiable = False

    def __init__(self, fmt: str = "jpeg", quality: int | None = None):
        fmt = fmt.lower()
        if fmt not in CLASSICAL_FORMATS:
            raise ValueError(f"unknown classical codec {fmt!r}; choose from {sorted(CLASSICAL_FORMATS)}")
        code, self._pil_format, default = CLASSICAL_FORMATS[fmt]
        quality = default if quality is None else int(quality)
        if not 0 <= quality <= 100:
            raise ValueError(f"{fmt} quality must be in 0..100, got {quality}")
        self.fmt, self.codec_code, self.quality, self.metric = fmt, code, quality, None
        self.name = f"{fmt}:q{quality}"

    def encode_array(self, arr: np.ndarray) -> bytes:
        """Encode an ``(H, W, 3)`` uint8 array with Pillow."""
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format=self._pil_format, quality=self.quality)
        return buf.getvalue()

    @staticmethod
    def decode_bytes(data: bytes, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Decode JPEG/WebP bytes into a ``(1, 3, H, W)`` float tensor.

        With ``size = (H, W)`` the payload's declared size is checked before any pixel is decoded.
        """
        try:
            with Image.open(io.BytesIO(data)) as img:
                if size is not None and (img.height, img.width) != tuple(size):
                    raise BitstreamError(f"image payload is {img.height}x{img.width}, header says {size[0]}x{size[1]}")
                arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
        except BitstreamError:
            raise
        except Exception as exc:
            raise BitstreamError(f"image payload could not be decoded ({exc})") from None
        return torch.from_numpy(arr.copy()).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)

    def _encode(self, x: torch.Tensor) -> tuple[list[bytes], tuple[int, ...]]:
        return [self.encode_array(to_uint8(x))], ()

    def _decode(self, strings: list[bytes], shape: tuple[int, ...], size: tuple[int, int]) -> torch.Tensor:
        if len(strings) != 1:
            raise BitstreamError(f"{self.fmt} bitstream must hold one string, found {len(strings)}")
        return self.decode_bytes(strings[0], size).to(self.device)

    def forward(self, x: torch.Tensor, standin: str = "none", rate: bool = False) -> CodecOutput:
        """Real JPEG/WebP reconstruction with a straight-through gradient; no likelihoods."""
        x = check_image_tensor(x)
        with torch.no_grad():
            real = torch.cat([self.decode_bytes(self.encode_array(to_uint8(xi))) for xi in x]).to(x)
        return CodecOutput(x + (real - x).detach(), None)
