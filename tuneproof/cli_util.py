"""Running a stage's main() from the command line with clean, user-facing errors."""

from __future__ import annotations

import sys
from typing import Callable

from tuneproof.io import TuneproofError


def run_main(main: Callable[[], object]) -> None:
    """Call `main`; a TuneproofError, or an OSError of the file system (disk full, a read-only
    folder: its message names the path), becomes one clear line on stderr and exit status 2."""
    try:
        main()
    except (TuneproofError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
