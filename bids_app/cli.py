"""Command line: ``strokefc bids_dir output_dir {participant,group} [options]``.

Exit codes: 0 success, 1 a processing failure (e.g. a participant's workflow crashed), 2 a usage or
input error (the message says what is wrong, where, and how to fix it; ``-v`` adds the traceback).
"""

from __future__ import annotations

import logging
import sys

from bids_app.execution import WorkflowFailed
from bids_app.parser import flag_names, parse_args
from workflows.utils.errors import InputError

LOGGER = logging.getLogger("strokefc")


def _count_verbose(argv: list[str]) -> int:
    """``-v`` count before parsing, so that errors met while parsing can show their traceback."""
    return sum(a.count("v") for a in argv if a.startswith("-v") and set(a[1:]) == {"v"}) + argv.count(
        "--verbose"
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``strokefc`` console script; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    verbose = _count_verbose(argv)
    try:
        config = parse_args(argv)
        # Nipype is imported only once the arguments are known to be valid (--help answers at once)
        from bids_app.console import setup_logging

        setup_logging(config.execution.verbose)
        # the level runners import Nipype, nilearn and PyTorch: only once the arguments are known to be
        # valid, so that --help, --version and usage errors answer at once
        if config.analysis_level == "participant":
            from bids_app.participant_level import run_participant_level

            return run_participant_level(config)
        from bids_app.group_level import run_group_level

        return run_group_level(config)
    except InputError as exc:
        if verbose:
            LOGGER.exception("input error")
        print(f"strokefc: error: {exc.render(flag_names())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("strokefc: interrupted", file=sys.stderr)
        return 130
    except WorkflowFailed as exc:  # a node crashed: the message names its error and crash file
        print(f"strokefc: processing failed: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a processing failure: exit 1, traceback with -v
        if verbose:
            LOGGER.exception("processing failure")
        # the first line only: some messages (Nipype's) carry a whole traceback
        first = (str(exc).strip().splitlines() or [""])[0]
        print(
            f"strokefc: processing failed: {type(exc).__name__}: {first} (run with -v for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
