"""gcgated: the gcgate daemon (gRPC server, task life-cycle, store, backends)."""

from gcgate import __version__

__all__ = ["__version__"]
