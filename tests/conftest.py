"""Shared fixtures: small real datasets collected once per test session."""

import pytest

from genrl_core.data.collect import collect


@pytest.fixture(scope="session")
def walker_random_data(tmp_path_factory):
    """Three real random-policy walker episodes (501 frames each)."""
    out = tmp_path_factory.mktemp("walker_random")
    collect("walker", "random", 3, out, seed=0, log=lambda *_: None)
    return out
