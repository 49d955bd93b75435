"""The `criptoren` console script: the command line of gql_api/cli.py, with Ctrl+C handled from the
first instant. Importing the command line takes a moment (seconds on a busy machine); an interrupt
then ends it with one line too, not a traceback."""

from __future__ import annotations

import signal
import sys


def main() -> None:
    try:
        from gql_api import cli
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted.\n")
        raise SystemExit(128 + signal.SIGINT) from None
    cli.main()


if __name__ == "__main__":
    main()
