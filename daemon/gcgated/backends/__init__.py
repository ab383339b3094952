"""Execution backends: where tasks actually run (local workers or Globus Compute)."""
