"""`make bench`: measurements of the DAG, the scheduler's use of it, the twin's gateway and setup cost.

One module per measurement; `python -m bench` (what `make bench` runs through scripts/bench.py)
runs them all and writes `bench/results.json` and `BENCHMARKS.md`. Every figure is a ratio of two
quantities measured in the same run.
"""
