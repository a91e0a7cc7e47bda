"""Subcommands of the run-time layer."""
