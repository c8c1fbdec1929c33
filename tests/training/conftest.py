"""Fixtures for the training tests: a tiny synthetic data set (see toydata.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("equilens_toydata", Path(__file__).with_name("toydata.py"))
toydata = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(toydata)


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory) -> Path:
    """3 classes x 20 images of 24x24 px, with a recorded log10_m_a on the axion class."""
    return toydata.make_toy_dataset(tmp_path_factory.mktemp("data") / "toy", n_per_class=20)


@pytest.fixture(scope="session")
def make_toy():
    """The toy data-set factory ``make_toy_dataset(path, n_per_class=20, size=24, ..., counts, nan_image)``."""
    return toydata.make_toy_dataset
