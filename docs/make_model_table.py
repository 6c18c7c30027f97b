"""Regenerate the size and FLOP table of docs/models.md ("Sizes and FLOPs at the papers' input sizes").

Usage: ``python docs/make_model_table.py [ROW ...]`` (from the repository root; ROW filters by the preset name,
e.g. ``mamba_bcd``). Builds every model from its preset in configs/models/ on the meta device (no memory, no
weights), counts its parameters and its FLOPs with :func:`visionssm.models.flops.count_flops` (fvcore's MAC
convention, scans as 9·B·L·D·N + B·D·L) and prints the markdown table. The 3D Mamba models at 128³ take minutes:
the torch scan backend still steps through its token blocks on meta tensors.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from visionssm.models import build_from_config
from visionssm.models.flops import count_flops

CONFIG_DIR = Path(__file__).parent.parent / "configs" / "models"


@dataclass(frozen=True)
class Row:
    """One model: its preset (with overrides), the grid it is counted at, and the published numbers."""

    label: str
    preset: str
    spatial: tuple[int, ...]
    params_m: float | None  # theirs, in M
    gflops: float | None  # theirs
    source: str  # the footnote in docs/models.md that gives the provenance of "theirs"
    overrides: dict[str, Any] = field(default_factory=dict)
    pair: bool = False  # ChangeMamba: two dates in TorchGeo's (B, 2, C, H, W) layout


ROWS = [
    Row("VMamba-T (VMambaClassifier tiny, 1000 classes)", "vmamba_classifier_tiny", (224, 224), 30, 4.9, "a"),
    Row("VM-UNet, Synapse (9 classes)", "vm_unet_synapse", (224, 224), 27.43, None, "b"),
    Row("VM-UNet, ISIC (1 class)", "vm_unet_synapse", (256, 256), 27.43, 4.11, "c", {"out_channels": 1}),
    Row("LightM-UNet 2D (3 in, 2 out)", "lightm_unet_2d", (512, 512), 5.01, 300, "d"),
    Row("LightM-UNet 3D (1 in, 3 out)", "lightm_unet_3d", (128, 128, 128), 5.02, 500, "d"),
    Row("U-Mamba Bot 3D (1 -> 14)", "umamba_bot_3d", (128, 128, 128), 42.1, None, "e"),
    Row("U-Mamba Enc 3D (1 -> 14)", "umamba_enc_3d", (128, 128, 128), 42.8, None, "e"),
    Row("MambaBCD-T", "mamba_bcd_tiny", (512, 512), 32.6, 45.74, "f", pair=True),
    Row("MambaBCD-S", "mamba_bcd_small", (512, 512), 54.0, 114.82, "f", pair=True),
    Row("MambaBCD-B", "mamba_bcd_base", (512, 512), 92.4, 179.32, "f", pair=True),
    Row("MambaSCD-T (7 classes)", "mamba_scd_tiny", (512, 512), 37.1, 73.42, "f", pair=True),
    Row("MambaSCD-S (7 classes)", "mamba_scd_small", (512, 512), 58.5, 146.70, "f", pair=True),
    Row("MambaSCD-B (7 classes)", "mamba_scd_base", (512, 512), 97.0, 211.55, "f", pair=True),
    Row("MambaBDA-T", "mamba_bda_tiny", (512, 512), 34.87, 59.57, "f", pair=True),
    Row("MambaBDA-S", "mamba_bda_small", (512, 512), 56.26, 130.80, "f", pair=True),
    Row("MambaBDA-B", "mamba_bda_base", (512, 512), 94.72, 195.43, "f", pair=True),
    Row("SegMamba, BraTS (4 -> 4)", "segmamba_brats", (128, 128, 128), 67.42, None, "i"),
    Row("AtrousMambaBCD-T", "atrous_mamba_bcd_tiny", (256, 256), None, None, "j", pair=True),
    Row("RSMamba-B (21 classes)", "rsmamba_b", (224, 224), 6.4, None, "g"),
    Row("MedMamba-T (6 classes)", "medmamba_t", (224, 224), 14.46, None, "h"),
]


def _diff(ours: float, theirs: float | None) -> str:
    return "–" if theirs is None else f"{round(100 * (ours - theirs) / theirs, 1) + 0.0:+.1f}%"  # + 0.0: no "-0.0"


def _theirs(value: float | None) -> str:
    return "–" if value is None else f"{value:g}"


def measure(row: Row) -> tuple[float, float]:
    """(parameters in M, GFLOPs) of the row's model on one input (one pair of dates), built and run on meta."""
    config = yaml.safe_load((CONFIG_DIR / f"{row.preset}.yaml").read_text())
    config["init_args"] = {**config.get("init_args", {}), **row.overrides}
    channels = config["init_args"]["in_channels"]
    shape = (1, 2, channels, *row.spatial) if row.pair else (1, channels, *row.spatial)
    with torch.device("meta"):
        model = build_from_config(config, source=row.preset).eval()
        flops = count_flops(model, torch.empty(shape))
    return sum(p.numel() for p in model.parameters()) / 1e6, flops / 1e9


def main(filters: list[str]) -> None:
    rows = [row for row in ROWS if not filters or any(f in row.preset for f in filters)]
    print("| model | input | params (ours) | params (theirs) | diff | GFLOPs (ours) | GFLOPs (theirs) | diff | src |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        start = time.perf_counter()
        params, gflops = measure(row)
        size = "x".join(map(str, row.spatial)) + (" pair" if row.pair else "")
        print(
            f"| {row.label} | {size} | {params:.2f} M | {_theirs(row.params_m)} M | {_diff(params, row.params_m)} "
            f"| {gflops:.2f} | {_theirs(row.gflops)} | {_diff(gflops, row.gflops)} | {row.source} |",
            flush=True,
        )
        print(f"  {row.preset}: {time.perf_counter() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
