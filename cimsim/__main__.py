"""`python -m cimsim`."""

import sys

try:
    from cimsim.cli import main
except KeyboardInterrupt:  # Ctrl-C while the program starts
    sys.stderr.write("cimsim: interrupted\n")
    sys.exit(130)

sys.exit(main())
