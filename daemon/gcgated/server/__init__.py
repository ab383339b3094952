"""The gRPC face of the daemon: servicer, error mapping, server assembly."""
