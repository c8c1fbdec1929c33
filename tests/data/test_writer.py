"""DatasetWriter: planned manifest, resume, refusal, integrity summary."""

import json

import numpy as np
import pytest

from equilens.data.store import (
    DatasetWriter,
    LensDataset,
    check_shards,
    describe_dataset,
    plan_shards,
    read_manifest,
)
from equilens.errors import DataError

SPEC = {"class_names": ["a", "b"], "image_shape": [1, 4, 4], "parameter_columns": ["p"], "seed": 3,
        "n_images": 5}


def _shard_data(start, stop):
    idx = np.arange(start, stop)
    images = np.stack([np.full((1, 4, 4), float(i), dtype=np.float32) for i in idx])
    return images, idx % 2, idx, {"p": idx * 0.5}, [json.dumps({"i": int(i)}) for i in idx]


def _write_all(path, ks=None):
    with DatasetWriter(path, SPEC, plan_shards(5, 2)) as w:
        for k in w.pending() if ks is None else ks:
            s = w.shards[k]
            w.write(k, *_shard_data(s.start, s.stop))
        return w


def test_plan_shards():
    assert plan_shards(5, 2) == [(0, 2), (2, 4), (4, 5)]
    with pytest.raises(DataError, match="at least one image"):
        plan_shards(0, 2)
    with pytest.raises(DataError, match="shard size"):
        plan_shards(3, 0)


def test_manifest_is_planned_then_completed(tmp_path):
    out = tmp_path / "d"
    w = DatasetWriter(out, SPEC, plan_shards(5, 2))
    m = read_manifest(out)
    assert m["complete"] is False and [s["sha256"] for s in m["shards"]] == [None, None, None]
    assert m["seed"] == 3 and m["image_shape"] == [1, 4, 4]
    with pytest.raises(DataError, match="incomplete"):
        LensDataset(out)
    w.close()
    _write_all(out)
    m = read_manifest(out)
    assert m["complete"] is True and all(s["sha256"] for s in m["shards"])
    ds = LensDataset(out)
    ds.verify()
    assert len(ds) == 5 and ds.get_images([4])[0, 0, 0, 0] == 4.0


def test_resume_writes_only_missing_shards(tmp_path):
    out = tmp_path / "d"
    _write_all(out, ks=[0, 2])
    (out / ".shard-00001.h5.abc.tmp").write_bytes(b"half a shard")  # left by a killed writer
    w = DatasetWriter(out, SPEC, plan_shards(5, 2))
    assert w.pending() == [1] and not list(out.glob(".*.tmp"))
    w.close()
    ref = tmp_path / "ref"
    _write_all(ref)
    _write_all(out)
    for k in range(3):
        name = f"shard-0000{k}.h5"
        assert (out / name).read_bytes() == (ref / name).read_bytes()


def test_resume_redoes_a_corrupt_shard(tmp_path):
    out = tmp_path / "d"
    _write_all(out)
    path = out / "shard-00001.h5"
    path.write_bytes(path.read_bytes()[:-50])  # truncated
    w = DatasetWriter(out, SPEC, plan_shards(5, 2))
    assert w.pending() == [1] and "shard-00001.h5" in w.notes[0]
    w.close()


def test_different_spec_is_refused(tmp_path):
    out = tmp_path / "d"
    _write_all(out, ks=[0])
    with pytest.raises(DataError, match="seed: stored 3, requested 4"):
        DatasetWriter(out, {**SPEC, "seed": 4}, plan_shards(5, 2))
    with pytest.raises(DataError, match="shard boundaries"):
        DatasetWriter(out, SPEC, plan_shards(5, 3))
    # nothing was lost
    assert read_manifest(out)["shards"][0]["sha256"] is not None


def test_non_dataset_directory_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        DatasetWriter(tmp_path, SPEC, plan_shards(5, 2))
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_second_writer_is_refused(tmp_path):
    w = DatasetWriter(tmp_path / "d", SPEC, plan_shards(5, 2))
    with pytest.raises(DataError, match="another equilens process"):
        DatasetWriter(tmp_path / "d", SPEC, plan_shards(5, 2))
    w.close()


def test_describe_and_check(tmp_path):
    out = tmp_path / "d"
    _write_all(out)
    summary = describe_dataset(out)
    assert summary.class_counts == {"a": 3, "b": 2}
    assert summary.ranges["p"] == {"a": (0.0, 2.0), "b": (0.5, 1.5)}
    assert "parameter ranges" in summary.format()
    path = out / "shard-00002.h5"
    path.write_bytes(path.read_bytes()[:-10])
    assert len(check_shards(out)) == 1
    with pytest.raises(DataError, match="shard-00002.h5 is corrupt or truncated"):
        describe_dataset(out)
