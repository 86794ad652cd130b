"""`python -m cimsim`."""

import sys

from cimsim.cli import main

sys.exit(main())
