"""Generation layer: seeds, determinism, worker independence, resume, refusal, NaN renders."""

import json
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import equilens.simulation.generate as gen
from equilens.data.store import LensDataset, read_manifest
from equilens.errors import ConfigError, DataError
from equilens.simulation.config import resolve_config
from equilens.simulation.generate import generate_dataset, image_streams, reproduce_image
from equilens.simulation.render import render_noiseless

CLASSES = ["no_sub", "cdm", "axion"]
N_PER_CLASS = 4  # 12 images
SHARD = 5  # shards of 5, 5, 2 images


def small_config(**overrides):
    return resolve_config("model_i", {"image_size": 16, **overrides})


def shard_bytes(path):
    return {p.name: p.read_bytes() for p in sorted(path.glob("shard-*.h5"))}


def run(out, **kw):
    args = dict(workers=1, shard_size=SHARD, progress=False)
    args.update(kw)
    return generate_dataset(small_config(), CLASSES, N_PER_CLASS, 7, out, **args)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return run(tmp_path_factory.mktemp("ref") / "d")


def test_image_streams_depend_only_on_seed_and_index():
    a_rng, a_noise = image_streams(7, 3)
    b_rng, b_noise = image_streams(7, 3)
    assert a_noise == b_noise and a_rng.random() == b_rng.random()
    assert image_streams(7, 4)[1] != a_noise and image_streams(8, 3)[1] != a_noise
    assert 0 <= a_noise < 2**53


def test_layout_labels_and_manifest(reference):
    ds = LensDataset(reference)
    ds.verify()
    assert len(ds) == 12 and ds.image_shape == (1, 16, 16)
    assert ds.class_counts() == {c: N_PER_CLASS for c in CLASSES}
    assert list(ds.labels) == [i % 3 for i in range(12)]  # interleaved
    assert [s.n for s in ds.shards] == [5, 5, 2]
    m = read_manifest(reference)
    assert m["complete"] is True and m["seed"] == 7 and m["n_per_class"] == N_PER_CLASS
    assert m["config"] == small_config().to_dict() and m["shard_size"] == SHARD
    assert set(m["library_versions"]) >= {"numpy", "lenstronomy", "astropy", "h5py", "python"}
    assert "noise_seed" in m["parameter_columns"] and "created" in m and m["equilens_version"]
    for i in range(12):
        rec = ds.record(i)
        assert rec["index"] == i and rec["class"] == CLASSES[i % 3]
        assert rec["noise_seed"] == image_streams(7, i)[1] == ds.parameters(["noise_seed"])["noise_seed"][i]
    n_sub = ds.parameters(["n_subhalos"])["n_subhalos"]
    assert np.all(n_sub[ds.labels == 0] == 0) and np.all(n_sub[ds.labels == 1] > 0)


def test_byte_identical_across_runs_and_worker_counts(reference, tmp_path):
    again = run(tmp_path / "again")
    two = run(tmp_path / "two", workers=2)
    ref = shard_bytes(reference)
    assert shard_bytes(again) == ref
    assert shard_bytes(two) == ref
    # the shard size only changes the files, not the images
    other = run(tmp_path / "shard4", shard_size=4)
    np.testing.assert_array_equal(LensDataset(other).get_images(range(12)),
                                  LensDataset(reference).get_images(range(12)))


def test_reproduce_image_and_noiseless_model(reference):
    ds = LensDataset(reference)
    for i in (0, 4, 11):
        np.testing.assert_array_equal(reproduce_image(ds, i), ds.get_images([i])[0, 0])
        model = reproduce_image(ds, i, noiseless=True)
        np.testing.assert_array_equal(model, render_noiseless(small_config(), ds.record(i)))
        assert model.shape == (16, 16) and not np.array_equal(model.astype(np.float32), ds.get_images([i])[0, 0])


def test_dask_local_cluster_gives_the_same_bytes(reference, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl:
        out = run(tmp_path / "dask", scheduler=cl.scheduler_address)
    assert shard_bytes(out) == shard_bytes(reference)


def run_interrupted_after_first_shard(out):
    """Start a run into ``out`` and interrupt it right after its first shard is written."""

    def stop(k):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(out, on_shard_written=stop)


def test_resume_after_an_exception(reference, tmp_path):
    out = tmp_path / "d"
    run_interrupted_after_first_shard(out)
    m = read_manifest(out)
    assert m["complete"] is False and sum(s["sha256"] is not None for s in m["shards"]) == 1
    written = []
    run(out, on_shard_written=written.append)
    assert written == [1, 2]  # nothing redone, nothing skipped
    assert shard_bytes(out) == shard_bytes(reference)
    assert read_manifest(out)["complete"] is True


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import equilens.simulation.generate as gen
    from equilens.simulation.config import resolve_config

    real = gen.render_image
    def render_then_die(config, record, rng):
        if record["index"] == int(sys.argv[2]):
            os.kill(os.getpid(), signal.SIGKILL)   # hard kill in the middle of a shard
        return real(config, record, rng)
    gen.render_image = render_then_die
    gen.generate_dataset(resolve_config("model_i", {"image_size": 16}), ["no_sub", "cdm", "axion"], 4, 7,
                         sys.argv[1], shard_size=5, progress=False)
""")


def test_resume_after_sigkill(reference, tmp_path):
    out = tmp_path / "d"
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(out), "7"], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    m = read_manifest(out)
    assert [s["sha256"] is not None for s in m["shards"]] == [True, False, False]
    with pytest.raises(DataError, match="incomplete"):
        LensDataset(out)
    run(out)
    assert shard_bytes(out) == shard_bytes(reference)
    LensDataset(out).verify()


def test_resume_redoes_a_shard_written_but_not_recorded(reference, tmp_path):
    out = run(tmp_path / "d")
    m = read_manifest(out)
    m["shards"][1]["sha256"] = None  # killed between the shard's rename and the manifest update
    m["complete"] = False
    (out / "manifest.json").write_text(json.dumps(m))
    (out / ".shard-00002.h5.x.tmp").write_bytes(b"partial")
    written = []
    run(out, on_shard_written=written.append)
    assert written == [1] and shard_bytes(out) == shard_bytes(reference)
    assert not list(out.glob(".*.tmp"))


def test_a_corrupt_finished_shard_is_made_again(reference, tmp_path):
    out = run(tmp_path / "d")
    path = out / "shard-00000.h5"
    path.write_bytes(path.read_bytes()[:-64])
    with pytest.warns(UserWarning, match="shard-00000.h5 does not match its checksum"):
        run(out)
    assert shard_bytes(out) == shard_bytes(reference)


@pytest.mark.parametrize("change", [{"seed": 8}, {"n_per_class": 5}, {"classes": ["no_sub", "cdm"]},
                                    {"config": {"noise": "none"}}])
def test_a_different_data_set_is_refused(tmp_path, change):
    out = tmp_path / "d"
    run_interrupted_after_first_shard(out)
    before = shard_bytes(out)
    config = small_config(**change.get("config", {}))
    with pytest.raises(DataError, match="already holds a different data set"):
        generate_dataset(config, change.get("classes", CLASSES), change.get("n_per_class", N_PER_CLASS),
                         change.get("seed", 7), out, shard_size=SHARD, progress=False)
    assert shard_bytes(out) == before  # nothing lost, nothing mixed


def test_a_non_dataset_directory_is_refused(tmp_path):
    (tmp_path / "thesis.tex").write_text("precious")
    with pytest.raises(DataError, match="not empty and holds no manifest.json"):
        run(tmp_path)
    assert (tmp_path / "thesis.tex").read_text() == "precious"


def test_nan_render_names_the_image_and_keeps_finished_shards(reference, tmp_path, monkeypatch):
    real = gen.render_image

    def nan_at_7(config, record, rng):
        image = real(config, record, rng)
        if record["index"] == 7:
            image[3, 4] = np.nan
        return image

    monkeypatch.setattr(gen, "render_image", nan_at_7)
    out = tmp_path / "d"
    with pytest.raises(DataError, match=r"image 7 \(class cdm\) rendered with 1 NaN or inf pixels; "
                                        r"its parameters: \{.*\"n_subhalos\""):
        run(out)
    m = read_manifest(out)
    assert m["shards"][0]["sha256"] is not None and m["shards"][1]["sha256"] is None
    kept = (out / "shard-00000.h5").read_bytes()
    monkeypatch.setattr(gen, "render_image", real)
    run(out)
    assert (out / "shard-00000.h5").read_bytes() == kept
    assert shard_bytes(out) == shard_bytes(reference)


def test_render_error_survives_the_trip_from_a_worker():
    # worker exceptions are pickled back to the main process: the message must survive
    import pickle

    exc = DataError("image 7 (class cdm) rendered with 1 NaN or inf pixels")
    assert str(pickle.loads(pickle.dumps(exc))) == str(exc)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n_per_class": 0}, "n_per_class must be a positive integer, got 0"),
    ({"n_per_class": -3}, "n_per_class must be a positive integer, got -3"),
    ({"classes": ["cdm", "wimp"]}, "unknown class 'wimp' for preset model_i; valid classes: no_sub, cdm, axion"),
    ({"classes": []}, "at least one class"),
    ({"classes": ["cdm", "cdm"]}, "must not repeat"),
    ({"seed": -1}, "seed must be a non-negative integer"),
    ({"workers": 0}, "workers must be a positive integer"),
    ({"shard_size": 0}, "shard_size must be a positive integer"),
])
def test_bad_arguments(tmp_path, kwargs, message):
    args = {"classes": CLASSES, "n_per_class": 2, "seed": 0, "workers": 1, "shard_size": 5}
    args.update(kwargs)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        generate_dataset(small_config(), args["classes"], args["n_per_class"], args["seed"], tmp_path / "d",
                         workers=args["workers"], shard_size=args["shard_size"], progress=False)
    assert not (tmp_path / "d").exists()


def test_killing_the_main_process_ends_its_workers(tmp_path):
    """kill -9 of `equilens simulate --workers 2` must not leave worker processes running."""
    import time

    psutil = pytest.importorskip("psutil")
    cmd = [sys.executable, "-m", "equilens", "simulate", "--preset", "model_i", "--n-per-class", "400",
           "--workers", "2", "--shard-size", "100", "--out", str(tmp_path / "d"), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    main = psutil.Process(proc.pid)
    descendants: list = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and len(descendants) < 3:
            time.sleep(0.2)
            descendants = main.children(recursive=True)  # the forkserver and the two workers
        assert proc.poll() is None and len(descendants) >= 3, "the workers never started"
        time.sleep(1.0)
        descendants = main.children(recursive=True)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        _, alive = psutil.wait_procs(descendants, timeout=15)
        assert not alive, f"still running after the main process was killed: {[p.pid for p in alive]}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for p in descendants:
            if p.is_running():
                p.kill()
