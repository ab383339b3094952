"""Command-line entry points: ``gcgated`` (the daemon) and ``gcgate`` (the user CLI)."""
