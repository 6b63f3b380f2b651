"""``python -m gateway.cli``: what the ``gateway`` script runs."""

import sys

from gateway.cli import main

sys.exit(main())
