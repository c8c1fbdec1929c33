"""The command-line entry point itself: help, imports, and one-line errors with exit code 2."""

import json
import subprocess
import sys

import pytest

from equilens.cli import build_parser, main

COMMANDS = ("simulate", "show", "info", "import-deeplense", "models", "check-equivariance", "train", "evaluate",
            "report", "quickstart")
HEAVY = ("torch", "lightning", "escnn", "lenstronomy", "matplotlib", "numpy", "h5py", "scipy")


def _subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices


def test_help_lists_commands(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    assert "usage: equilens" in out
    for command in COMMANDS:
        assert command in out


def test_module_entry_point_version():
    proc = subprocess.run([sys.executable, "-m", "equilens", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert proc.stdout.startswith("equilens ")


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_imports_no_heavy_module(command):
    """`equilens [COMMAND] --help` loads none of torch, Lightning, escnn, lenstronomy, matplotlib, numpy."""
    argv = ["--help"] if command is None else [command, "--help"]
    code = (f"import sys\nfrom equilens.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit as e:\n"
            f"    assert e.code == 0, e.code\nprint('LOADED', [m for m in {HEAVY!r} if m in sys.modules])\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "usage: equilens" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "LOADED []"


def test_every_command_has_a_description():
    for name, sub in _subparsers().items():
        assert sub.description, f"{name} has no description"


def test_train_help_shows_every_default(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option, default in (("--epochs", "10"), ("--batch-size", "32"), ("--lr", "0.001"), ("--weight-decay", "0.0001"),
                            ("--seed", "0"), ("--normalisation", "standardise"), ("--augmentation", "none"),
                            ("--num-workers", "2"), ("--val-fraction", "0.15"), ("--task", "classify"),
                            ("--limit-per-class", "off"), ("--early-stopping", "off"), ("--devices", "1")):
        assert option in text
        assert f"default {default})" in text or f"default {default}" in text, option
    # every option that takes a value states its default, is required, or says what it is for
    sub = _subparsers()["train"]
    for action in sub._actions:
        if action.option_strings and action.nargs != 0 and action.dest not in ("help",):
            assert action.help and ("default" in action.help or action.required or action.dest in (
                "config", "data", "model", "target")), action.dest


def _one_line_error(capsys, argv, *must_contain):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"equilens {argv[0]}: error: ")
    for text in must_contain:
        assert text in lines[0], lines[0]
    return lines[0]


def test_show_unsupported_extension_is_one_line(capsys, tmp_path):
    _one_line_error(capsys, ["show", str(tmp_path / "nodata"), "--out", str(tmp_path / "p.xyz")],
                    "unsupported figure format '.xyz'", "png", "pdf")
    _one_line_error(capsys, ["show", str(tmp_path / "nodata"), "--out", str(tmp_path / "preview")],
                    "no file extension")


def test_check_equivariance_unsupported_extension_is_one_line(capsys, tmp_path):
    _one_line_error(capsys, ["check-equivariance", "resnet18", "--out", str(tmp_path / "curve.docx")],
                    "unsupported figure format '.docx'", "png")
    assert not list(tmp_path.iterdir())


def test_report_out_naming_a_file_is_one_line(capsys, tmp_path):
    existing = tmp_path / "taken.txt"
    existing.write_text("x")
    _one_line_error(capsys, ["report", str(tmp_path), "--out", str(existing)], "is a file")
    _one_line_error(capsys, ["report", str(tmp_path), "--out", str(tmp_path / "report.html")], "names a file")
    _one_line_error(capsys, ["report", str(tmp_path), "--out", str(existing / "sub")], "is a file")


def test_train_unknown_model_arg_lists_the_valid_ones(capsys, tmp_path):
    line = _one_line_error(capsys, ["train", "--data", str(tmp_path), "--model", "resnet18", "--model-arg",
                                    "widht=2", "--out", str(tmp_path / "run")],
                           "widht", "width=1.0", "dropout=0.0")
    assert "valid options" in line
    assert not (tmp_path / "run").exists()


def test_model_options_follow_kwargs_factories_to_their_class():
    from equilens.cli.train import model_options

    assert model_options("resnet18") == {"width": 1.0, "dropout": 0.0}
    harmonic = model_options("harmonic_net")
    assert harmonic and "in_channels" not in harmonic and "num_outputs" not in harmonic


def test_quickstart_bad_seeds_is_one_line(capsys, tmp_path):
    _one_line_error(capsys, ["quickstart", "--out", str(tmp_path / "q"), "--seeds", "0,x"], "--seeds")


def test_simulate_records_its_command_in_the_manifest(tmp_path):
    out = tmp_path / "d"
    argv = ["simulate", "--preset", "model_i", "--classes", "no_sub", "--n-per-class", "2", "--set", "image_size=16",
            "--out", str(out), "--no-progress"]
    proc = subprocess.run([sys.executable, "-m", "equilens", *argv], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["command"] == "equilens " + " ".join(argv)
    info = subprocess.run([sys.executable, "-m", "equilens", "info", str(out)], capture_output=True, text=True)
    assert "command       equilens simulate --preset model_i" in info.stdout


def test_simulate_show_and_info_never_import_torch(tmp_path):
    out, png = tmp_path / "d", tmp_path / "p.png"
    code = (f"import sys\nfrom equilens.cli import main\n"
            f"assert main(['simulate', '--preset', 'model_ii', '--n-per-class', '2', '--set', 'image_size=16', "
            f"'--out', {str(out)!r}, '--no-progress']) == 0\n"
            f"assert main(['info', {str(out)!r}]) == 0\n"
            f"assert main(['show', {str(out)!r}, '--out', {str(png)!r}, '--per-class', '1']) == 0\n"
            f"print('LOADED', [m for m in ('torch', 'lightning', 'escnn') if m in sys.modules])\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "LOADED []"
    assert png.is_file()
