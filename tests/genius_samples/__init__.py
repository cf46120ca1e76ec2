"""Task classes used by the tests (importable as ``genius_samples.tasks``; pytest puts tests/ on sys.path)."""
