"""``python -m gemmapipe``: the same as the ``gemmapipe`` command."""

from .cli import main

main()
