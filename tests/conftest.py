import os
import sys

# Let tests import the shared check helpers (layer_checks.py) by name.
sys.path.insert(0, os.path.dirname(__file__))
