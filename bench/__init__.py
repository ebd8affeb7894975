"""`make bench`: what the DAG costs above what Airflow itself costs, measured, with its spread.

One module per measurement; `python -m bench` (what `make bench` runs through scripts/bench.py)
runs them all and writes `bench/results.json`, `bench/history.json` and `BENCHMARKS.md`. The DAG
runs (bench/dag_runs.py) feed the floor comparison (bench/floor_dag.py, bench/overhead.py), the
measured critical path (bench/critical_path.py, from the twin's wait log) and the worker-slot
figure; bench/parse_cost.py and bench/gateway.py measure the parse and the twin's data plane.
Every figure is a ratio of two quantities measured in the same run.
"""
