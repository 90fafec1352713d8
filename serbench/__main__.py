"""``python -m serbench``: the command line, for environments without the ``serbench`` script."""
from serbench.cli import main

raise SystemExit(main())
