"""Speed and memory benchmarks; `make bench` runs them all into docs/benchmarks.md."""
