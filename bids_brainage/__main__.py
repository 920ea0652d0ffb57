"""Allow ``python -m bids_brainage``."""

from bids_brainage.cli.run import main

if __name__ == "__main__":
    raise SystemExit(main())
