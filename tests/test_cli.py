"""The visionssm command line: version, environment report, demo, and exit codes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from visionssm import __version__
from visionssm.cli import main


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"visionssm {__version__}"


def test_info_reports_versions_and_backends(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "torch" in out and "scan backends" in out
    assert "reference  yes" in out and "torch      yes" in out
    assert "mamba_ssm" in out


def test_demo_runs_and_fast_path_matches_reference(capsys):
    assert main(["demo", "--size", "8"]) == 0
    out = capsys.readouterr().out
    for name in ("cross", "hilbert", "tri_orientation", "hilbert3d"):
        assert f"  {name} " in out
    assert "selective_scan" in out and "torch" in out


def test_bad_input_exits_2_with_one_line_message(capsys):
    assert main(["demo", "--size", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "visionssm: error: demo: --size must be at least 2, got 1"


def test_console_script_entry_point():
    """`python -m visionssm.cli` behaves like the installed `visionssm` script."""
    result = subprocess.run(
        [sys.executable, "-m", "visionssm.cli", "--version"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and result.stdout.strip() == f"visionssm {__version__}"
