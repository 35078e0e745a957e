"""Images in and out, and the photo sets that packages ship (no download at run time)."""

from robustnic.data.images import (
    DEFAULT_MAX_PIXELS,
    crop_to,
    image_paths,
    load_image,
    pad_to_multiple,
    save_image,
    to_uint8,
    quantize_8bit,
)
from robustnic.data.photos import HELDOUT_PHOTOS, bundled_photos, load_photo_set, training_photo_paths

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "HELDOUT_PHOTOS",
    "bundled_photos",
    "crop_to",
    "image_paths",
    "load_image",
    "load_photo_set",
    "pad_to_multiple",
    "quantize_8bit",
    "save_image",
    "to_uint8",
    "training_photo_paths",
]
