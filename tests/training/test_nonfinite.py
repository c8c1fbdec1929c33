"""Images with NaN or inf pixels: recorded in the manifest, reported by `info`, refused wherever they sit
(train, val or test split, or another data set given to evaluate), or left out with skip_nonfinite."""

import json

import numpy as np
import pytest

from equilens.cli import main
from equilens.data.store import LensDataset, check_shards, describe_dataset
from equilens.errors import DataError
from equilens.evaluation.evaluate import evaluate
from equilens.training.config import TrainConfig
from equilens.training.fit import build_datamodule, train


def _cfg(data, **kw):
    base = dict(data=str(data), model="cnn_small", epochs=1, batch_size=8, num_workers=0,
                model_kwargs={"widths": [8, 16]})
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def first_of_each_part(toy_data):
    """Data-set position of the first image of each split part (the split depends only on the labels)."""
    dm = build_datamodule(_cfg(toy_data), log=lambda _: None)
    return {part: int(dm.positions(part)[0]) for part in ("train", "val", "test")}


@pytest.mark.parametrize("part", ["train", "val", "test"])
def test_nonfinite_image_is_refused_in_every_split(make_toy, tmp_path, first_of_each_part, part):
    pos = first_of_each_part[part]
    value = float("inf") if part == "val" else float("nan")
    data = make_toy(tmp_path / f"bad-{part}", n_per_class=20, nan_image=pos, bad_value=value)
    shard = f"shard-{pos // 25:05d}.h5"
    with pytest.raises(DataError, match=rf"image {pos} \({shard}\).*--skip-nonfinite"):
        train(_cfg(data), tmp_path / "run", progress=False, log=lambda _: None)
    assert not (tmp_path / "run").exists()


def test_skip_nonfinite_leaves_the_image_out(make_toy, tmp_path, first_of_each_part):
    pos = first_of_each_part["test"]
    data = make_toy(tmp_path / "bad", n_per_class=20, nan_image=pos)
    messages = []
    run = train(_cfg(data, skip_nonfinite=True), tmp_path / "run", progress=False, log=messages.append)
    split = json.loads((run / "split.json").read_text())
    assert pos not in split["train"] + split["val"] + split["test"]
    assert any(f"image {pos}" in m and "leaving out" in m for m in messages)
    result = evaluate(run, symmetry=False, log=lambda _: None)
    assert np.isfinite(result["accuracy"]) and result["n"] == len(split["test"])
    # another data set with the image: left out too, since the run skips them
    other = evaluate(run, data=str(data), symmetry=False, log=lambda _: None, out=tmp_path / "ev")
    assert other["n"] == 59


def test_evaluate_refuses_other_data_with_a_nonfinite_image(toy_data, make_toy, tmp_path):
    run = train(_cfg(toy_data), tmp_path / "run", progress=False, log=lambda _: None)
    data = make_toy(tmp_path / "bad", n_per_class=20, nan_image=7)
    with pytest.raises(DataError, match=r"image 7 \(shard-00000.h5\)"):
        evaluate(run, data=str(data), symmetry=False, log=lambda _: None)


def test_manifest_records_nonfinite_and_info_reports_it(make_toy, tmp_path, capsys):
    data = make_toy(tmp_path / "bad", n_per_class=20, nan_image=30)
    manifest = json.loads((data / "manifest.json").read_text())
    assert [s["nonfinite"] for s in manifest["shards"]] == [[], [30], []]
    summary = describe_dataset(data)
    assert summary.nonfinite == {30: "shard-00001.h5"}
    assert "NON-FINITE    1 image(s)" in summary.format() and "image 30 (shard-00001.h5)" in summary.format()
    assert main(["info", str(data)]) == 0
    assert "image 30 (shard-00001.h5)" in capsys.readouterr().out
    clean = describe_dataset(make_toy(tmp_path / "clean", n_per_class=5))
    assert clean.nonfinite == {} and "non-finite    none" in clean.format()


def test_manifest_without_the_record_is_scanned(make_toy, tmp_path):
    data = make_toy(tmp_path / "old", n_per_class=20, nan_image=51)
    path = data / "manifest.json"
    manifest = json.loads(path.read_text())
    for shard in manifest["shards"]:
        del shard["nonfinite"]
    path.write_text(json.dumps(manifest))
    messages = []
    assert LensDataset(data).nonfinite_images(log=messages.append) == {51: "shard-00002.h5"}
    assert "scanning" in messages[0]


def test_info_check_finds_a_wrong_record(make_toy, tmp_path):
    data = make_toy(tmp_path / "lying", n_per_class=20, nan_image=3)
    path = data / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["shards"][0]["nonfinite"] = []
    path.write_text(json.dumps(manifest))
    problems = check_shards(data)
    assert len(problems) == 1 and "records non-finite images [] but the file holds [3]" in problems[0]


def test_posterior_evaluation_of_other_data_leaves_nonfinite_images_out(toy_data, make_toy, tmp_path):
    """Posterior runs honour skip_nonfinite: in their own split, and when another data set is evaluated (the
    image with a NaN pixel is left out of the 20 with a recorded log10_m_a); without it the image is refused."""
    flow = {"transforms": 1, "hidden_features": [16]}
    bad = make_toy(tmp_path / "bad", n_per_class=20, nan_image=45)  # positions 40-59: the axion class
    options = {"n_samples": 20, "bins": 2}
    skipping = train(_cfg(toy_data, task="posterior", target="log10_m_a", flow_kwargs=flow, skip_nonfinite=True),
                     tmp_path / "run", progress=False, log=lambda _: None)
    result = evaluate(skipping, data=str(bad), log=lambda _: None, out=tmp_path / "ev", posterior_options=options)
    assert result["n"] == 19 and result["subset"] == "whole data set"
    own = train(_cfg(bad, task="posterior", target="log10_m_a", flow_kwargs=flow, skip_nonfinite=True),
                tmp_path / "run-bad", progress=False, log=lambda _: None)
    split = json.loads((own / "split.json").read_text())
    assert 45 not in split["train"] + split["val"] + split["test"]
    strict = train(_cfg(toy_data, task="posterior", target="log10_m_a", flow_kwargs=flow),
                   tmp_path / "run2", progress=False, log=lambda _: None)
    with pytest.raises(DataError, match=r"image 45 \(shard-00001.h5\)"):
        evaluate(strict, data=str(bad), log=lambda _: None, out=tmp_path / "ev2", posterior_options=options)
