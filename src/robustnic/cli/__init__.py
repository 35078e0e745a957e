"""The ``robustnic`` command line: a thin layer, one module per command in ``cli/commands``."""
