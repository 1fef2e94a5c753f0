"""Benchmarks: one module per area (`bench/bench_<area>.py`), each runnable on its own as
`.venv/bin/python -m bench.bench_<area>`; `.venv/bin/python -m bench` (= `make bench`) runs them all."""
