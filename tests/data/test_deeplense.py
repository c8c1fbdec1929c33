"""import-deeplense on tiny fake DeepLense class folders."""

import math

import numpy as np
import pytest

from equilens.data.deeplense import import_deeplense
from equilens.data.store import LensDataset, read_manifest
from equilens.errors import DataError


def _fake_deeplense(root, n=3, size=6, channel_axis=False):
    rng = np.random.default_rng(1)
    truth = {}
    for cls in ("axion", "cdm", "no_sub"):
        (root / cls).mkdir(parents=True)
        for j in range(n):
            image = rng.random((1, size, size) if channel_axis else (size, size))
            name = f"{cls}_sim_{j}.npy"
            if cls == "axion":
                mass = 10 ** rng.uniform(-24, -22)
                np.save(root / cls / name, np.array([image, mass], dtype=object))
                truth[f"{cls}/{name}"] = (image.reshape(size, size), mass)
            else:
                np.save(root / cls / name, image)
                truth[f"{cls}/{name}"] = (image.reshape(size, size), None)
    return truth


def test_import_roundtrip(tmp_path):
    truth = _fake_deeplense(tmp_path / "dl", channel_axis=True)
    out = import_deeplense(tmp_path / "dl", tmp_path / "x", allow_pickle=True, shard_size=4, progress=False)
    ds = LensDataset(out)
    ds.verify()
    assert ds.class_names == ["no_sub", "cdm", "axion"]  # the equilens simulate order
    assert ds.class_counts() == {"no_sub": 3, "cdm": 3, "axion": 3}
    assert ds.image_shape == (1, 6, 6)
    assert list(ds.labels[:6]) == [0, 1, 2, 0, 1, 2]  # interleaved
    params = ds.parameters(["m_a", "log10_m_a"])
    for i in range(len(ds)):
        rec = ds.record(i)
        image, mass = truth[rec["source_file"]]
        np.testing.assert_array_equal(ds.get_images([i])[0, 0], image.astype(np.float32))
        if mass is None:
            assert math.isnan(params["m_a"][i])
        else:
            assert params["m_a"][i] == mass and params["log10_m_a"][i] == pytest.approx(math.log10(mass))
            assert rec["axion"]["m_a"] == mass
    assert read_manifest(out)["source"]["n_files"] == 9


def test_pickle_needs_explicit_permission(tmp_path):
    _fake_deeplense(tmp_path / "dl")
    with pytest.raises(DataError, match="unpickling a file can run arbitrary code.*--allow-pickle"):
        import_deeplense(tmp_path / "dl", tmp_path / "x", progress=False)
    assert not (tmp_path / "x").exists()  # nothing was written before the check


def test_mixed_shapes_name_two_files(tmp_path):
    _fake_deeplense(tmp_path / "dl")
    np.save(tmp_path / "dl" / "cdm" / "cdm_sim_9.npy", np.zeros((7, 7)))
    with pytest.raises(DataError, match=r"no_sub_sim_0.npy is 6x6 but .*cdm_sim_9.npy is 7x7"):
        import_deeplense(tmp_path / "dl", tmp_path / "x", allow_pickle=True, progress=False)


def test_not_a_deeplense_folder(tmp_path):
    (tmp_path / "dl").mkdir()
    with pytest.raises(DataError, match="no class sub-folders"):
        import_deeplense(tmp_path / "dl", tmp_path / "x", progress=False)
    (tmp_path / "dl" / "cdm").mkdir()
    np.save(tmp_path / "dl" / "cdm" / "a.npy", np.zeros((2, 3, 3)))
    with pytest.raises(DataError, match=r"shape \(2, 3, 3\)"):
        import_deeplense(tmp_path / "dl", tmp_path / "x", progress=False)


def test_reimport_resumes_and_other_source_is_refused(tmp_path):
    _fake_deeplense(tmp_path / "dl")
    out = import_deeplense(tmp_path / "dl", tmp_path / "x", allow_pickle=True, shard_size=4, progress=False)
    before = (out / "shard-00000.h5").stat().st_mtime_ns
    import_deeplense(tmp_path / "dl", out, allow_pickle=True, shard_size=4, progress=False)  # nothing to do
    assert (out / "shard-00000.h5").stat().st_mtime_ns == before
    np.save(tmp_path / "dl" / "cdm" / "cdm_sim_7.npy", np.zeros((6, 6)))
    with pytest.raises(DataError, match="already holds a different data set"):
        import_deeplense(tmp_path / "dl", out, allow_pickle=True, shard_size=4, progress=False)
    LensDataset(out).verify()
