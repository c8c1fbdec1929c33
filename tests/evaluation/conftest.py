"""Fixtures for the evaluation tests: the toy data set of tests/training/toydata.py and tiny trained runs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "equilens_toydata_eval", Path(__file__).parents[1] / "training" / "toydata.py")
toydata = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(toydata)


@pytest.fixture(scope="session")
def eval_data(tmp_path_factory) -> Path:
    return toydata.make_toy_dataset(tmp_path_factory.mktemp("evaldata") / "toy", n_per_class=20)


def _train(data: Path, out: Path, **kw) -> Path:
    from equilens.training.config import TrainConfig
    from equilens.training.fit import train

    base = dict(data=str(data), model="cnn_small", epochs=2, batch_size=8, num_workers=0,
                model_kwargs={"widths": [8, 16]})
    base.update(kw)
    return train(TrainConfig(**base), out, progress=False)


@pytest.fixture(scope="session")
def cls_runs(eval_data, tmp_path_factory) -> list[Path]:
    """Two classification runs (seeds 0 and 1) of the small CNN."""
    root = tmp_path_factory.mktemp("evalruns")
    return [_train(eval_data, root / f"cnn-s{s}", seed=s) for s in (0, 1)]


@pytest.fixture(scope="session")
def reg_run(eval_data, tmp_path_factory) -> Path:
    """A log10_m_a regression run with a predicted variance."""
    return _train(eval_data, tmp_path_factory.mktemp("evalreg") / "reg", task="regress", target="log10_m_a",
                  predict_variance=True, epochs=1)


@pytest.fixture(scope="session")
def make_toy():
    return toydata.make_toy_dataset
