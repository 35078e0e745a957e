"""One module per CLI command. Each defines ``register(subparsers)`` which adds its parser and sets
``func`` to a ``run(args) -> int`` function. Adding a command is adding a module here."""
