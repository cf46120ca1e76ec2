"""Test-side stand-ins for engines that cannot run on the test machine (see each package's docstring)."""
