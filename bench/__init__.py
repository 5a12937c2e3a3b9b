"""Benchmarks: each ``bench_<feature>.py`` module has a ``main()`` that prints a markdown table."""
