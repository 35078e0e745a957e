"""Images in and out, and the photo sets that packages ship (no download at run time).

The names below are imported from their submodules on first use (see :mod:`robustnic._lazy`).
"""

from robustnic._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "robustnic.data.limits": ("DEFAULT_MAX_PIXELS",),
    "robustnic.data.images": ("crop_to", "image_paths", "load_image", "pad_to_multiple", "quantize_8bit",
                              "save_image", "to_uint8"),
    "robustnic.data.photos": ("HELDOUT_PHOTOS", "bundled_photos", "load_photo_set", "training_photo_paths"),
})
