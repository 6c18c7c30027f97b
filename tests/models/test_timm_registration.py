"""`import visionssm` registers the backbones with timm, and still imports when timm cannot be imported.

Each check runs in a fresh interpreter: in this process visionssm (and timm) are already imported.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


def _run(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_bare_import_registers_with_timm():
    pytest.importorskip("timm")
    out = _run(
        """
        import visionssm, timm, torch
        m = timm.create_model("visionssm_test_vmamba", pretrained=False, num_classes=3, in_chans=1)
        print(tuple(m(torch.randn(2, 1, 32, 32)).shape), timm.is_model("visionssm_vmamba_tiny"))
        """
    )
    assert out == "(2, 3) True"


def test_import_without_timm():
    """A finder at the front of sys.meta_path makes timm unimportable, as if the extra were not installed."""
    out = _run(
        """
        import sys

        class BlockTimm:
            def find_spec(self, name, path=None, target=None):
                if name == "timm" or name.startswith("timm."):
                    raise ImportError(f"No module named {name!r} (blocked)")
                return None

        sys.meta_path.insert(0, BlockTimm())
        import visionssm
        from visionssm.kernels import selective_scan
        from visionssm.scans import scan_plan

        print(visionssm.__version__ != "", "timm" in sys.modules, "visionssm.models" in sys.modules)
        """
    )
    assert out == "True False False"
