"""``python -m netatlas``: the same as the ``netatlas`` command."""
import sys

from .cli import main

sys.exit(main())
