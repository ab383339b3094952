"""gcgate: a thin client for the gcgate daemon, with the Globus Compute SDK's API."""

__version__ = "0.1.0"
