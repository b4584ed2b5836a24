"""mlops test suite."""
