"""Input limits, importable without torch (the CLI shows them in its help)."""

#: Largest image (in pixels) read by default: 36 MP, e.g. 6000x6000. Override per call.
DEFAULT_MAX_PIXELS = 36_000_000
