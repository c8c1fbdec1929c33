"""The command-line entry point itself."""

import subprocess
import sys

from equilens.cli import main


def test_help_lists_commands(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    assert "usage: equilens" in out


def test_module_entry_point_version():
    proc = subprocess.run([sys.executable, "-m", "equilens", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert proc.stdout.startswith("equilens ")
