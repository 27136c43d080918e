"""Benchmarks (not part of the test suite): ``python -m bench`` or ``make bench``; see ``bench/__main__.py``."""
