"""Command-line front end: ``visionssm --version``, ``visionssm info``, ``visionssm demo``.

A thin layer over the library: bad input (``InputError``) exits with code 2 and a one-line message,
any other failure with code 1; ``--verbose`` shows the traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from visionssm import __version__
from visionssm.errors import InputError


def _info(_: argparse.Namespace) -> None:
    from visionssm.environment import collect

    print("\n".join(collect().lines()))


def _demo(args: argparse.Namespace) -> None:
    from visionssm.pipelines.scan_demo import run_demo

    result = run_demo(size=args.size)
    print(f"Scan orders ({len(result.orders)}): directions, mean step between consecutive tokens, jumps")
    for order in result.orders:
        shape = "x".join(map(str, order.spatial_shape))
        print(
            f"  {order.name:<16} {shape:>8}  K={order.directions:<2}  step={order.mean_step:5.2f}  jumps={order.jumps}"
        )
    print(f"multi_scan, cross order on a {args.size}x{args.size} phantom:")
    for run in result.multi_scan_runs:
        print(f"  {run.backend:<10} {run.seconds * 1e3:8.1f} ms  rel. diff to reference {run.relative_error:.1e}")
    batch, dim, state, length = result.scan_shape
    print(f"selective_scan, batch {batch}, dim {dim}, N {state}, L {length}:")
    reference_seconds = result.scan_runs[0].seconds
    for run in result.scan_runs:
        speedup = reference_seconds / run.seconds
        print(
            f"  {run.backend:<10} {run.seconds * 1e3:8.1f} ms  {speedup:5.1f}x  "
            f"rel. diff to reference {run.relative_error:.1e}"
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="visionssm", description="Visual state-space models for imaging.")
    parser.add_argument("--version", action="version", version=f"visionssm {__version__}")
    parser.add_argument("--verbose", action="store_true", help="show tracebacks and debug logging")
    commands = parser.add_subparsers(dest="command", required=True)
    info = commands.add_parser("info", help="versions, devices and available scan backends")
    info.set_defaults(handler=_info)
    demo = commands.add_parser("demo", help="run the scan orders and scan backends on a small example")
    demo.add_argument("--size", type=int, default=32, help="side of the square example image (default 32)")
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        args.handler(args)
    except InputError as err:
        if args.verbose:
            raise
        print(f"visionssm: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        if args.verbose:
            raise
        print(f"visionssm: error: {type(err).__name__}: {err} (run with --verbose for the traceback)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
