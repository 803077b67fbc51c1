"""Argument parsing and dispatch of the ``dwdaemon`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from dwdaemon.cli import exitcodes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dwdaemon", description="Operate a dwdaemon DICOMweb store.",
        epilog=exitcodes.EPILOG)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    imp = sub.add_parser(
        "import", help="import folders, files and zip files of DICOM files",
        description="Walk PATHs (folders, DICOM files, zip files) and store every DICOM file, "
                    "by STOW-RS to a running daemon (--url) or straight into the store of a "
                    "stopped daemon (--store CONFIG). Bad files are reported and skipped. "
                    "With --journal, files done are recorded and skipped when run again "
                    "(resume).", epilog=exitcodes.EPILOG)
    imp.add_argument("paths", nargs="+", metavar="PATH")
    target = imp.add_mutually_exclusive_group()
    target.add_argument("--url", default="http://127.0.0.1:8042/dicom-web",
                        help="DICOMweb root of the daemon (default %(default)s)")
    target.add_argument("--store", metavar="CONFIG",
                        help="write into the store of this configuration (daemon stopped)")
    imp.add_argument("--user", metavar="USER:PASSWORD", help="HTTP Basic credentials")
    imp.add_argument("--batch", type=int, default=50, metavar="N",
                     help="instances per STOW-RS request (default %(default)s)")
    imp.add_argument("--batch-mb", type=float, default=64.0, metavar="MB",
                     help="largest STOW-RS request body in MB (default %(default)s)")
    imp.add_argument("--parallel", type=int, default=2, metavar="N",
                     help="STOW-RS requests in flight at once (default %(default)s)")
    imp.add_argument("--journal", metavar="FILE",
                     help="record files done in FILE and skip them when run again")
    imp.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS",
                     help="time-out of one STOW-RS request (default %(default)s)")
    imp.add_argument("--insecure", action="store_true",
                     help="do not verify the server's TLS certificate")
    imp.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    imp.add_argument("--verbose", "-v", action="store_true",
                     help="list every refused file in the summary (default: the first 20)")

    chk = sub.add_parser(
        "check-config", help="validate a configuration file and print the effective settings",
        description="Validate FILE as the daemon does at start-up; print the effective "
                    "settings (defaults included, secrets hidden) as JSON on standard output "
                    "and the warnings on standard error.", epilog=exitcodes.EPILOG)
    chk.add_argument("file", metavar="FILE", nargs="?",
                     help="configuration file (default: the embedded defaults)")

    ver = sub.add_parser(
        "verify", help="check the stored files against the index",
        description="Read every indexed file and compare it with the index (size, MD5, "
                    "Study/Series/SOP Instance UIDs); list files the index does not know "
                    "(orphans), leftover temporary files and index rows without a file. Run "
                    "it with the daemon stopped, or at least idle.", epilog=exitcodes.EPILOG)
    ver.add_argument("--config", "-c", metavar="FILE",
                     help="configuration of the store (default: the embedded defaults)")
    ver.add_argument("--remove-orphans", action="store_true",
                     help="delete orphan files and leftover temporary files")
    ver.add_argument("--json", action="store_true", help="print the report as JSON")
    ver.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "import":
            from dwdaemon.cli.importer import run_import

            return run_import(args)
        if args.command == "check-config":
            from dwdaemon.cli.checkconfig import run_check_config

            return run_check_config(args)
        from dwdaemon.cli.verify import run_verify

        return run_verify(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return exitcodes.INTERRUPTED
