"""Small shared helpers: atomic file output, seeding, devices."""

from robustnic.utils.io import atomic_write_bytes, atomic_write_text, atomic_path
from robustnic.utils.runtime import resolve_device, seed_everything

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "resolve_device", "seed_everything"]
