"""The HDF5 shard + manifest format."""

import json

import numpy as np
import pytest

from equilens.data.store import (
    FORMAT_NAME,
    FORMAT_VERSION,
    LensDataset,
    ShardInfo,
    shard_file_name,
    write_json_atomic,
    write_shard,
)
from equilens.errors import DataError


def _make(tmp_path, sizes=(5, 3), size=8):
    rng = np.random.default_rng(0)
    shards, start = [], 0
    all_images = []
    for k, n in enumerate(sizes):
        images = rng.normal(size=(n, 1, size, size)).astype(np.float32)
        all_images.append(images)
        idx = np.arange(start, start + n)
        sha = write_shard(tmp_path / shard_file_name(k), images, idx % 2, idx,
                          {"a": idx * 1.5, "b": np.full(n, np.nan)},
                          [json.dumps({"i": int(i)}) for i in idx])
        shards.append(ShardInfo(shard_file_name(k), start, start + n, sha).to_dict())
        start += n
    write_json_atomic(tmp_path / "manifest.json", {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "class_names": ["x", "y"],
        "image_shape": [1, size, size], "shards": shards})
    return np.concatenate(all_images)


def test_roundtrip(tmp_path):
    images = _make(tmp_path)
    ds = LensDataset(tmp_path)
    assert len(ds) == 8 and ds.class_counts() == {"x": 4, "y": 4}
    np.testing.assert_array_equal(ds.get_images([7, 0, 5, 4]), images[[7, 0, 5, 4]])
    np.testing.assert_array_equal(ds.get_image(6), images[6])
    assert ds.parameters(["a"])["a"][6] == 9.0
    assert ds.record(6) == {"i": 6}
    ds.verify()


def test_unknown_parameter_lists_valid(tmp_path):
    _make(tmp_path)
    with pytest.raises(DataError, match="records: a, b"):
        LensDataset(tmp_path).parameters(["log10_m_a"])


def test_corrupt_shard_is_named(tmp_path):
    _make(tmp_path)
    path = tmp_path / shard_file_name(1)
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="shard-00001.h5 is corrupt"):
        LensDataset(tmp_path).verify()


def test_missing_manifest(tmp_path):
    with pytest.raises(DataError, match="no manifest.json"):
        LensDataset(tmp_path)


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_atomic_writes_follow_the_umask(tmp_path, umask):
    """mkstemp makes 0600 files; shards and JSON files must get the mode any other new file gets."""
    import os
    import stat

    old = os.umask(umask)
    try:
        write_json_atomic(tmp_path / "a.json", {"x": 1})
        write_shard(tmp_path / "s.h5", np.zeros((2, 1, 4, 4), np.float32), np.zeros(2, int), np.arange(2), {},
                    ["{}", "{}"])
        (tmp_path / "plain.txt").write_text("x")
    finally:
        os.umask(old)
    expected = 0o666 & ~umask
    for name in ("a.json", "s.h5", "plain.txt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == expected, name
