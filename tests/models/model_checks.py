"""Checks every model test runs: seeded determinism and a safetensors round trip."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import safetensors.torch as safetensors_torch
import torch
from torch import Tensor, nn


def assert_deterministic_and_round_trips(build: Callable[[], tuple[nn.Module, Tensor]], tmp_path: Path) -> None:
    """Two builds under one seed agree exactly; saving to safetensors and loading into a build made under another
    seed reproduces the output. ``build()`` returns (model, example input)."""
    torch.manual_seed(1)
    model, x = build()
    torch.manual_seed(1)
    again, _ = build()
    model.eval()
    again.eval()
    with torch.no_grad():
        y = model(x)
        assert torch.equal(y, again(x))
        path = tmp_path / "model.safetensors"
        safetensors_torch.save_file(model.state_dict(), str(path))
        torch.manual_seed(2)
        fresh, _ = build()
        fresh.load_state_dict(safetensors_torch.load_file(str(path)))
        assert torch.equal(fresh.eval()(x), y)
