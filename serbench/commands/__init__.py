"""One module per ``serbench`` sub-command; each defines ``register(subparsers)``."""
