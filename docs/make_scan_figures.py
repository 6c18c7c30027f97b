"""Regenerate the scan-order pictures and the tables of docs/scans.md.

Usage: ``python docs/make_scan_figures.py`` (from the repository root). Writes one PNG per 2D order to
docs/figures/scans/ and prints, as markdown, the locality tables and the Hilbert continuity summary that
docs/scans.md quotes.
"""

from __future__ import annotations

import itertools
import math
import os
import tempfile
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from visionssm.scans import available_scans, scan_plan

FIGURE_DIR = Path(__file__).parent / "figures" / "scans"
GRID = (16, 16)
PANELS_PER_ROW = 4

# (file stem, scan name, options); the figures use a 16 x 16 grid unless the stem says otherwise.
FIGURES_2D = [
    ("raster", "raster", {}),
    ("bidirectional", "bidirectional", {}),
    ("cross", "cross", {}),
    ("snake", "snake", {}),
    ("zigzag8", "zigzag8", {}),
    ("zorder", "zorder", {}),
    ("jpeg_zigzag", "jpeg_zigzag", {}),
    ("hilbert", "hilbert", {}),
    ("window", "window", {}),
    ("atrous", "atrous", {}),
    ("atrous_dilated", "atrous", {"rate": 2, "window": 4}),
    ("mamba_nd", "mamba_nd", {}),
]
EXTRA_FIGURES = [("hilbert_13x18", "hilbert", {}, (13, 18))]

TABLE_2D = [(name, options) for _, name, options in FIGURES_2D]
TABLE_2D.insert(TABLE_2D.index(("window", {})) + 1, ("window", {"window": 2}))
TABLE_3D = [(name, {}) for name in available_scans(3)]
SHAPES_2D = [(14, 14), (16, 16), (56, 56)]
SHAPES_3D = [(8, 8, 8), (16, 16, 16), (5, 7, 9)]


def draw(stem: str, name: str, options: dict, shape: tuple[int, int]) -> Path:
    """One panel per direction: the path through the cell centres, coloured from start (dark) to end (yellow)."""
    plan = scan_plan(name, shape, **options)
    rows = math.ceil(plan.num_directions / PANELS_PER_ROW)
    cols = min(plan.num_directions, PANELS_PER_ROW)
    panel = 3.2 if plan.num_directions == 1 else 2.2  # inches; single curves get room for detail
    fig = Figure(figsize=(panel * cols, (panel + 0.3) * rows))
    FigureCanvasAgg(fig)  # render with Agg, no GUI backend or pyplot state involved
    axes = fig.subplots(rows, cols, squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k >= plan.num_directions:
            continue
        i, j = np.divmod(plan.index[k].numpy(), shape[1])
        points = np.stack([j, i], axis=1)  # x = column, y = row (the y axis is inverted below)
        segments = LineCollection(np.stack([points[:-1], points[1:]], axis=1), cmap="viridis", linewidths=1.2)
        segments.set_array(np.arange(len(points) - 1))
        ax.add_collection(segments)
        ax.plot(j[0], i[0], "o", color="crimson", markersize=3)
        ax.set_xlim(-0.7, shape[1] - 0.3)
        ax.set_ylim(shape[0] - 0.3, -0.7)
        ax.set_aspect("equal")
        ax.set_title(f"{k}: {plan.directions[k]}", fontsize=8)
    settings = ", ".join(f"{key}={value}" for key, value in options.items())
    fig.suptitle(
        f"{name}({settings}) on {shape[0]}x{shape[1]}" if settings else f"{name} on {shape[0]}x{shape[1]}", fontsize=9
    )
    fig.tight_layout()
    target = FIGURE_DIR / f"{stem}.png"
    # Write to a temporary file next to the target, then rename, so an interrupted run leaves no partial PNG.
    handle, temporary = tempfile.mkstemp(suffix=".png", dir=FIGURE_DIR)
    os.close(handle)
    os.chmod(temporary, 0o644)  # mkstemp creates owner-only files
    fig.savefig(temporary, dpi=72)
    os.replace(temporary, target)
    return target


def mean_steps(name: str, options: dict, shape: tuple[int, ...]) -> tuple[float, float]:
    """Mean Euclidean and mean Manhattan distance between consecutive tokens, over all directions."""
    plan = scan_plan(name, shape, **options)
    return plan.step_lengths("euclidean").mean().item(), plan.step_lengths().double().mean().item()


def locality_table(configs: list, shapes: list) -> str:
    header = "| scan | K | " + " | ".join(f"{'x'.join(map(str, s))} eucl. / manh." for s in shapes) + " |"
    lines = [header, "|" + "---|" * (len(shapes) + 2)]
    for name, options in configs:
        label = name + "".join(f" {key}={value}" for key, value in options.items())
        cells = [f"{e:.3f} / {m:.3f}" for e, m in (mean_steps(name, options, s) for s in shapes)]
        lines.append(
            f"| {label} | {scan_plan(name, shapes[0], **options).num_directions} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def continuity_summary(name: str, ndim: int, largest: int = 17) -> str:
    """Count the grids with sides 1..largest whose curve has a step longer than one cell."""
    shapes = list(itertools.product(range(1, largest + 1), repeat=ndim))
    broken = [s for s in shapes if any(scan_plan(name, s).num_jumps())]
    return f"{name}: {len(shapes)} shapes with sides 1..{largest}, {len(broken)} with a non-unit step {broken}"


def main() -> None:
    FIGURE_DIR.mkdir(parents=True, exist_ok=True)
    for stem, name, options in FIGURES_2D:
        path = draw(stem, name, options, GRID)
        print(f"wrote {path} ({path.stat().st_size // 1024} KB)")
    for stem, name, options, shape in EXTRA_FIGURES:
        path = draw(stem, name, options, shape)
        print(f"wrote {path} ({path.stat().st_size // 1024} KB)")
    print("\n### 2D\n")
    print(locality_table(TABLE_2D, SHAPES_2D))
    print("\n### 3D\n")
    print(locality_table(TABLE_3D, SHAPES_3D))
    print("\n### Continuity\n")
    print(continuity_summary("hilbert", 2))
    print(continuity_summary("hilbert3d", 3))


if __name__ == "__main__":
    main()
