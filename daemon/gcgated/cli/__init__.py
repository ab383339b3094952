"""Command-line entry point of the daemon, ``gcgated``; the user's ``gcgate`` command
is the client's (:mod:`gcgate.cli`)."""
