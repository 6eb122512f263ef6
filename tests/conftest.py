"""Shared pytest fixtures."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests draw new examples on every local run (to find what no one thought of) but
# fixed ones in CI (a red CI must be reproducible): `CI=true` selects the "ci" profile, and
# HYPOTHESIS_PROFILE overrides either. A failure prints the seed that reproduces it.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") == "true" else "dev")
)


def shared_data_dir() -> Path:
    """Directory of the shared data files: ``$FOCAL_DATA_DIR``, else ``<repo>/../shared/data``."""
    env = os.environ.get("FOCAL_DATA_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_data() -> Callable[[str], Path]:
    """Return a function giving the path of a shared data file, skipping the test if absent.

    Example:
        def test_x(shared_data):
            path = shared_data("mmlu_pro_29llm.npz")
    """

    def get(name: str) -> Path:
        path = shared_data_dir() / name
        if not path.is_file():
            pytest.skip(f"shared data file {path} is absent (set FOCAL_DATA_DIR)")
        return path

    return get
