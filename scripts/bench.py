"""`make bench`: the benchmarks in the `bench` package (see bench/__main__.py and BENCHMARKS.md)."""

import sys

from bench.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
