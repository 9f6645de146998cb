"""One module per `rep-accel` subcommand (see rep_accel/cli.py for the interface)."""
