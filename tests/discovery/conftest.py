"""Discovery tests use the registry fixtures of tests/conftest.py."""
