"""The ``percell`` command: work with an experiment outside the workflow."""

from __future__ import annotations

import argparse
import sys

from percell.errors import PercellError
from percell.logs import setup_logging


def _version() -> str:
    from percell import __version__

    return f"percell {__version__}"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``percell`` command."""
    parser = argparse.ArgumentParser(prog="percell", description=__doc__)
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True)
    export = sub.add_parser("export", help="write the wide per-cell table")
    export.add_argument("experiment", help="the .percell directory")
    export.add_argument("--csv", help="CSV file to write")
    export.add_argument("--parquet", help="Parquet file to write")
    upgrade = sub.add_parser(
        "upgrade",
        help="carry a schema 3.0.0 experiment to 4.0.0 (the PerCell 3 application "
        "since March 2026) in place, keeping every id, tag and measurement",
    )
    upgrade.add_argument("experiment", help="the .percell directory")
    unlock = sub.add_parser(
        "unlock",
        help="remove the run lock a lost run left (one killed on another host)",
    )
    unlock.add_argument("experiment", help="the .percell directory")
    publish = sub.add_parser(
        "publish",
        help="copy the experiment's OME-Zarr stores (images, labels, masks) to "
        "an S3 prefix for web viewers; again, only what changed is sent",
    )
    publish.add_argument("experiment", help="the .percell directory")
    publish.add_argument(
        "url",
        help="s3://bucket/prefix (AWS credentials and "
        "AWS_ENDPOINT_URL from the environment)",
    )
    check = sub.add_parser(
        "check-config",
        help="read and validate a workflow config file, naming the line of a "
        "YAML error (Snakemake's own message names neither file nor line)",
    )
    check.add_argument("config", help="the config file (YAML)")
    args = parser.parse_args(argv)
    setup_logging()
    if args.command == "upgrade":
        from percell import run_lock
        from percell.experiment_format.upgrade import upgrade as upgrade_experiment

        try:
            with run_lock.held(args.experiment):
                counts = upgrade_experiment(args.experiment)
        except PercellError as exc:
            print(f"percell upgrade: {exc}", file=sys.stderr)
            return 2
        print(
            f"{args.experiment}: schema 4.0.0 ("
            + ", ".join(f"{v} {k}" for k, v in counts.items())
            + ")"
        )
    if args.command == "unlock":
        from percell import run_lock

        holder = run_lock.unlock(args.experiment)
        if holder is None:
            print(f"{args.experiment}: no run lock")
        else:
            print(f"{args.experiment}: removed the lock of {run_lock.describe(holder)}")
    if args.command == "check-config":
        from percell.config import check_config_file

        try:
            check_config_file(args.config)
        except PercellError as exc:
            print(f"percell check-config: {exc}", file=sys.stderr)
            return 2
        print(f"{args.config}: a valid percell config")
    if args.command == "publish":
        from percell import run_lock
        from percell.publish import publish as publish_experiment

        try:
            with run_lock.held(args.experiment):  # not while a run writes it
                counts = publish_experiment(args.experiment, args.url)
        except PercellError as exc:
            print(f"percell publish: {exc}", file=sys.stderr)
            return 2
        print(
            f"{args.experiment} -> {args.url}: "
            + ", ".join(f"{v} {k}" for k, v in counts.items())
        )
    if args.command == "export":
        from percell.export import export_cells

        if not (args.csv or args.parquet):
            parser.error("give --csv and/or --parquet")
        try:
            export_cells(args.experiment, args.csv, args.parquet)
        except PercellError as exc:
            print(f"percell export: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
