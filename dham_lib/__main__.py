"""``python -m dham_lib``: see :mod:`dham_lib.study.cli`."""

import sys

from dham_lib.study.cli import main

sys.exit(main())
