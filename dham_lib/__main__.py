"""``python -m dham_lib``: see :mod:`dham_lib.cli`."""

import sys

from dham_lib.cli import main

sys.exit(main())
