"""The command line of the four `*_to_mds.py` scripts: their shared options, and running one conversion with
the exit codes of `EXIT_CODES`."""

from __future__ import annotations

import argparse
from typing import Callable
import os
import sys

from convert.driver import convert
from convert.report import REPORT
from convert.validate import DEFAULT_MAX_IMAGE_PIXELS

EXIT_CODES = """exit codes:
  0  converted; every rejected record and dropped image is counted by reason in conversion_report.json
  1  input or setup error (one line on stderr); nothing published: the output root has no index.json
  2  command-line usage error
  3  converted, but parts of some inputs were unreadable (input_errors in the report; records an
     img2dataset shard's stats name but the shard lacks count too); --accept-input-errors makes this 0"""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Flag defaults shown, the script's docstring (with its example command) kept as written."""


def base_parser(description: str, inputs: str) -> argparse.ArgumentParser:
    """The options every converter takes; `inputs` says what its --input files are."""
    p = argparse.ArgumentParser(description=description, formatter_class=_HelpFormatter, epilog=EXIT_CODES)
    p.add_argument("--input", nargs="+", required=True,
                   help=f"{inputs}: paths, folders, globs or {{a..b}} brace patterns (local or s3://)")
    p.add_argument("--output", required=True,
                   help="output root: a local folder or s3://bucket/prefix (S3_ENDPOINT_URL for S3-compatible stores)")
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 1)),
                   help="worker processes (one input file at a time each)")
    p.add_argument("--shard-size", default="64mb", help="MDS shard size limit (bytes, or e.g. 64mb)")
    p.add_argument("--max-samples", type=int, default=None,
                   help="stop after this many samples, taken from the inputs in order (single process)")
    p.add_argument("--compression", default=None, help="MDS shard compression, e.g. zstd (none for JPEG-heavy data)")
    p.add_argument("--max-image-pixels", type=int, default=DEFAULT_MAX_IMAGE_PIXELS,
                   help="decompression-bomb limit: images with more pixels are rejected")
    p.add_argument("--staging-dir", default=None,
                   help="local scratch folder for s3:// outputs (None: the system temp dir)")
    p.add_argument("--no-cross-input-dedup", action="store_true",
                   help="only reject duplicate keys within one input file (saves memory on billions of keys)")
    existing = p.add_mutually_exclusive_group()
    existing.add_argument("--overwrite", action="store_true",
                          help="the output root holds another conversion: replace it")
    existing.add_argument("--append", action="store_true",
                          help="the output root holds a conversion of other inputs: add these inputs to it")
    p.add_argument("--accept-input-errors", action="store_true",
                   help="exit 0 even when parts of some inputs were unreadable (they are still counted)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run_cli(spec_module: str, args: argparse.Namespace, inputs: list[str], options: dict) -> dict:
    """Run a converter script and exit with the code of `EXIT_CODES`."""
    try:
        report = convert(spec_module, inputs, args.output, workers=args.workers, shard_size=args.shard_size,
                         max_samples=args.max_samples, compression=args.compression, staging_dir=args.staging_dir,
                         options=options, max_image_pixels=args.max_image_pixels,
                         progress_bar=not args.no_progress, dedup_across_inputs=not args.no_cross_input_dedup,
                         existing="overwrite" if args.overwrite else "append" if args.append else "refuse")
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    if report["input_errors"] and not args.accept_input_errors:
        print(f"exit 3: parts of {report['inputs_with_errors']} input(s) were unreadable (see input_errors in "
              f"{REPORT}); pass --accept-input-errors to accept", file=sys.stderr)
        raise SystemExit(3)
    return report


def console_script(main: Callable[[], dict]) -> Callable[[], int]:
    """A console-script entry point around a converter's `main`, which returns its report (no exit code);
    failures leave through SystemExit with a code of EXIT_CODES."""
    def run() -> int:
        main()
        return 0
    return run
