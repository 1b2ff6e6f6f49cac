"""``python -m kickstand.simulators.vehicle …`` — the same as ``kickstand-sim vehicle …``."""

import sys

from kickstand.simulators.vehicle.cli import main

sys.exit(main())
