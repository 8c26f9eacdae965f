"""``python -m dynst_fast`` is the ``dynst`` command."""

import sys

from .cli import main

sys.exit(main())
