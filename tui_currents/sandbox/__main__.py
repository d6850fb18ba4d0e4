"""`python -m tui_currents.sandbox`: serve until SIGINT/SIGTERM; prints the base URL first."""

import sys

from tui_currents.sandbox.running import main

if __name__ == "__main__":
    sys.exit(main())
