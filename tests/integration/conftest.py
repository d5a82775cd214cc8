"""
Shared pytest fixtures for the integration tests.

pg: a started throwaway PostgreSQL 15 cluster (tests/integration/pgharness.py), one per test,
always stopped and removed afterwards.
rx: a started alert receiver double (tests/integration/alert_receiver.py), stopped afterwards.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from alert_receiver import Receiver  # noqa: E402
from pgharness import PgCluster  # noqa: E402


@pytest.fixture
def pg():
    cluster = PgCluster()
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.cleanup()


@pytest.fixture
def daemons():
    """Daemons a test started (tests/integration/drsup.py); any still running are killed after it."""
    made = []
    yield made
    for d in made:
        d.cleanup()


@pytest.fixture
def rx():
    r = Receiver().start()
    yield r
    r.stop()
