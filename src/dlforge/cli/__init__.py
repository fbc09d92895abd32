"""The ``dlforge`` command line: thin shells over the Python API."""
