"""Running a stage's main() from the command line with clean, user-facing errors."""

from __future__ import annotations

import sys
from typing import Callable

from tuneproof.io import TuneproofError


def run_main(main: Callable[[], object]) -> None:
    """Call `main`; a TuneproofError becomes one clear line on stderr and exit status 2."""
    try:
        main()
    except TuneproofError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
