"""The simulate / show / info / import-deeplense subcommands: exit codes and messages."""

import numpy as np
import pytest

from equilens.cli import main
from equilens.data.store import LensDataset, read_manifest
from equilens.evaluation.preview import arcsec_to_pixel, panel_title
from equilens.simulation.config import resolve_config

SMALL = ["--set", "image_size=16"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "m1"
    code = main(["simulate", "--preset", "model_i", "--classes", "no_sub,cdm,axion", "--n-per-class", "3",
                 "--seed", "0", "--out", str(out), "--shard-size", "4", "--no-progress", *SMALL])
    assert code == 0
    return out


def test_simulate_writes_the_set(dataset):
    ds = LensDataset(dataset)
    assert ds.class_counts() == {"no_sub": 3, "cdm": 3, "axion": 3}
    assert read_manifest(dataset)["config"]["image_size"] == 16


def test_list_presets(capsys):
    assert main(["simulate", "--list-presets"]) == 0
    out = capsys.readouterr().out
    for name in ("model_i", "model_ii", "model_iii", "150x150", "64x64", "no_sub, cdm, axion", "euclid_vis"):
        assert name in out


def test_config_file_and_legacy(tmp_path):
    (tmp_path / "o.yaml").write_text("image_size: 12\nnoise: none\n")
    out = tmp_path / "d"
    assert main(["simulate", "--preset", "model_i", "--classes", "cdm", "--n-per-class", "2", "--out", str(out),
                 "--config", str(tmp_path / "o.yaml"), "--legacy", "--no-progress"]) == 0
    cfg = read_manifest(out)["config"]
    assert cfg["legacy"] is True and cfg["fixed_orientation"] is True and cfg["noise"] == "none"
    assert LensDataset(out).image_shape == (1, 12, 12)


@pytest.mark.parametrize(("argv", "message"), [
    (["--preset", "model_x"], "model_i, model_ii, model_iii"),
    (["--preset", "model_i", "--classes", "wimp"], "valid classes: no_sub, cdm, axion"),
    (["--preset", "model_i", "--set", "colour=blue"], "unknown config key(s) 'colour'; valid keys: preset"),
    (["--preset", "model_i", "--set", "subhalo_mass_range=[1e10, 1e6]"], "min must be < max"),
    (["--preset", "model_i", "--n-per-class", "0"], "n_per_class must be a positive integer, got 0"),
    (["--preset", "model_i", "--n-per-class", "-5"], "n_per_class must be a positive integer, got -5"),
    (["--preset", "model_i", "--out", None], "needs --out"),
])
def test_simulate_bad_input(tmp_path, capsys, argv, message):
    base = {"--n-per-class": "2", "--out": str(tmp_path / "d")}
    args = list(argv)
    for flag, value in base.items():
        if flag not in args:
            args += [flag, value]
    args = [a for i, a in enumerate(args) if a is not None and not (i + 1 < len(args) and args[i + 1] is None)]
    assert main(["simulate", *args, "--no-progress", *SMALL]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "d" / "shard-00000.h5").exists()


def test_refuses_a_different_config_in_the_same_directory(dataset, capsys):
    before = {p.name: p.read_bytes() for p in dataset.glob("shard-*.h5")}
    assert main(["simulate", "--preset", "model_i", "--classes", "no_sub,cdm,axion", "--n-per-class", "3",
                 "--seed", "1", "--out", str(dataset), "--shard-size", "4", "--no-progress", *SMALL]) == 2
    assert "seed: stored 0, requested 1" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in dataset.glob("shard-*.h5")} == before


def test_info(dataset, capsys):
    assert main(["info", str(dataset)]) == 0
    out = capsys.readouterr().out
    assert "no_sub 3, cdm 3, axion 3" in out and "1x16x16" in out
    assert "log10_m_a" in out and "all 3 shards match their SHA-256" in out


def test_info_names_a_truncated_shard(dataset, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(dataset, copy)
    shard = copy / "shard-00001.h5"
    shard.write_bytes(shard.read_bytes()[:1000])
    assert main(["info", str(copy)]) == 2
    err = capsys.readouterr().err
    assert "shard-00001.h5 is corrupt or truncated" in err and "shard-00000" not in err


def test_info_on_a_non_dataset(tmp_path, capsys):
    assert main(["info", str(tmp_path)]) == 2
    assert "no manifest.json" in capsys.readouterr().err


def test_show_writes_a_png(dataset, tmp_path):
    out = tmp_path / "preview.png"
    assert main(["show", str(dataset), "--out", str(out), "--per-class", "2", "--mark-substructure"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_panel_titles(dataset):
    ds = LensDataset(dataset)
    cdm = panel_title("cdm", ds.record(1))
    assert cdm.startswith("cdm\nn_sub=") and "src=(" in cdm
    assert "log10 m_a=-2" in panel_title("axion", ds.record(2))


def test_marks_use_the_renderers_pixel_grid():
    # independent reference: lenstronomy's own coordinate -> pixel map for the renderer's grid
    from lenstronomy.Data.imaging_data import ImageData

    from equilens.simulation.render import _renderer

    for preset in ("model_i", "model_ii"):
        config = resolve_config(preset)
        data = ImageData(**_renderer(config).kwargs_data)
        x = np.array([0.0, 0.7, -1.3, 2.1])
        y = np.array([0.0, -0.4, 1.9, 0.3])
        col_ref, row_ref = data.map_coord2pix(x, y)
        col, row = arcsec_to_pixel(x, y, config.image_size, config.pixel_scale)
        np.testing.assert_allclose(col, col_ref, atol=1e-9)
        np.testing.assert_allclose(row, row_ref, atol=1e-9)


def test_import_deeplense_cli(tmp_path, capsys):
    for cls in ("axion", "cdm", "no_sub"):
        (tmp_path / "dl" / cls).mkdir(parents=True)
        for j in range(2):
            image = np.full((5, 5), float(j))
            content = np.array([image, 1e-23], dtype=object) if cls == "axion" else image
            np.save(tmp_path / "dl" / cls / f"{j}.npy", content)
    out = tmp_path / "x"
    assert main(["import-deeplense", str(tmp_path / "dl"), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "pickled" in err and "can run arbitrary code" in err and "--allow-pickle" in err
    assert main(["import-deeplense", str(tmp_path / "dl"), "--out", str(out), "--allow-pickle",
                 "--no-progress"]) == 0
    assert LensDataset(out).class_counts() == {"no_sub": 2, "cdm": 2, "axion": 2}
    assert main(["info", str(out)]) == 0


def test_info_on_an_unfinished_set(tmp_path, capsys):
    from equilens.data.store import DatasetWriter, plan_shards

    DatasetWriter(tmp_path / "d", {"class_names": ["a"], "image_shape": [1, 4, 4]}, plan_shards(4, 2)).close()
    assert main(["info", str(tmp_path / "d")]) == 2
    assert "incomplete: 2 of 2 shards are not finished (first: shard-00000.h5)" in capsys.readouterr().err


def test_show_marks_need_a_simulated_set(tmp_path, capsys):
    (tmp_path / "dl" / "cdm").mkdir(parents=True)
    np.save(tmp_path / "dl" / "cdm" / "0.npy", np.ones((5, 5)))
    assert main(["import-deeplense", str(tmp_path / "dl"), "--out", str(tmp_path / "x"), "--no-progress"]) == 0
    assert main(["show", str(tmp_path / "x"), "--out", str(tmp_path / "p.png")]) == 0
    assert main(["show", str(tmp_path / "x"), "--out", str(tmp_path / "q.png"), "--mark-substructure"]) == 2
    assert "drop --mark-substructure" in capsys.readouterr().err


def test_import_mixed_shapes_exit_code(tmp_path, capsys):
    (tmp_path / "dl" / "cdm").mkdir(parents=True)
    (tmp_path / "dl" / "no_sub").mkdir(parents=True)
    np.save(tmp_path / "dl" / "cdm" / "a.npy", np.ones((5, 5)))
    np.save(tmp_path / "dl" / "no_sub" / "b.npy", np.ones((6, 6)))
    assert main(["import-deeplense", str(tmp_path / "dl"), "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "images of different shapes" in err and "b.npy is 6x6" in err and "a.npy is 5x5" in err


def test_nan_render_exit_code(tmp_path, capsys, monkeypatch):
    import equilens.simulation.generate as gen

    real = gen.render_image

    def nan_at_4(config, record, rng):
        image = real(config, record, rng)
        if record["index"] == 4:
            image[0, 0] = np.inf
        return image

    monkeypatch.setattr(gen, "render_image", nan_at_4)
    out = tmp_path / "d"
    assert main(["simulate", "--preset", "model_i", "--n-per-class", "2", "--out", str(out), "--shard-size", "2",
                 "--no-progress", *SMALL]) == 2
    err = capsys.readouterr().err
    assert "image 4 (class cdm) rendered with 1 NaN or inf pixels" in err and "Traceback" not in err
    assert [s["sha256"] is not None for s in read_manifest(out)["shards"]] == [True, True, False]
