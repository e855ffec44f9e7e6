"""Benchmark harnesses: run from a checkout, never installed with the library.

- :mod:`benchmarks.candidates`: the models compared (ours, timm, torchvision, smp U-Nets), by name.
- :mod:`benchmarks.speed`: step time and memory of each candidate, one fresh process per run.
- :mod:`benchmarks.report`: summaries, ratios, tables, plots and result files of a speed run.
- :mod:`benchmarks.transplant`: validation Dice against iterations for grown vs. fresh models.

``tools/benchmark.py`` and ``tools/benchmark_transplant.py`` are their command lines.
"""
