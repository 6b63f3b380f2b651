"""``python -m gateway_tools``: what the ``gateway-tools`` script runs."""

import sys

from gateway_tools.cli import main

sys.exit(main())
