"""Deferrable triggers of the remote runners (they run in the triggerer's event loop)."""
