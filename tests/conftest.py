import os
import sys

import pytest
from hypothesis import HealthCheck, settings

# Let tests import the shared check helpers (layer_checks.py) by name.
sys.path.insert(0, os.path.dirname(__file__))

# Property and fuzz tests: derandomized (fixed seeds) with a modest budget by default, so CI is
# reproducible and quick; `pytest --fuzz=long` (or FCNN_FUZZ=long) runs many more examples locally.
settings.register_profile("ci", derandomize=True, max_examples=40, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", derandomize=False, max_examples=2000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])


def pytest_addoption(parser):
    parser.addoption("--fuzz", choices=("ci", "long"), default=os.environ.get("FCNN_FUZZ", "ci"),
                     help="hypothesis budget: ci (fixed seeds, fast) or long (many random examples)")


def pytest_configure(config):
    settings.load_profile(config.getoption("--fuzz"))
    # Tests filter with assume(), never an early return: a test whose examples are all filtered
    # must fail (FailedHealthCheck / Unsatisfiable), so these checks stay on in every profile.
    suppressed = settings().suppress_health_check
    if HealthCheck.filter_too_much in suppressed:
        raise pytest.UsageError("conftest.py: the hypothesis profile must not suppress filter_too_much")


def fuzz_scale(config_value: str) -> int:
    """Multiplier for hand-rolled fuzz loops: 1 in CI, 25 with --fuzz=long."""
    return 25 if config_value == "long" else 1
