"""The test suite; a package so that its harnesses import as ``tests.harness`` (see ``pythonpath`` in pyproject)."""
