"""Command-line interface: argument parsing (parser.py) and the run logic (run.py)."""
