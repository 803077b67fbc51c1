"""``python -m dwdaemon.cli``: same as the ``dwdaemon`` console script."""

import sys

from dwdaemon.cli.main import main

sys.exit(main())
