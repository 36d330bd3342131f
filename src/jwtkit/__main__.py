"""``python -m jwtkit``: the same as the ``jwtkit`` command."""

from __future__ import annotations

import sys

from jwtkit.cli import main

sys.exit(main())
