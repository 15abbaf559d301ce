"""What test modules share: helpers they import, and the fixtures that more than one test
folder uses (loaded for every folder by ``pytest_plugins`` in tests/conftest.py). A test
module imports from here, never from a conftest file or another test module; a fixture that
only one folder uses stays in that folder's conftest."""
