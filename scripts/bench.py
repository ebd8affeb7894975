"""`make bench`: not measured yet (issue 8). Says so instead of printing made-up figures."""

import sys

if __name__ == "__main__":
    print("make bench: no benchmarks are implemented yet; see BENCHMARKS.md once they are.", file=sys.stderr)
    sys.exit(2)
