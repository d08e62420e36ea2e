"""Entry point for `python -m core`."""

import sys

from core.orchestration.cli import main

sys.exit(main())
