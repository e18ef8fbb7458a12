"""``python -m functional_cnn`` runs the command line (see :mod:`functional_cnn.cli`)."""
import sys

from .cli import main

sys.exit(main())
