"""Benchmarks that prove (or disprove) the pitch: a real server, real installers, interleaved baselines.

``python -m bench`` (``make bench``) starts ``cloche serve`` on a private data dir and uid range, runs every
scenario with a warm-up and interleaved repetitions (cloche, baseline, cloche, baseline, ...), and writes
``bench/results/<date>.json`` and ``bench/results/latest.md``. ``--quick`` and ``--only`` are for iteration;
their results go to ``*-partial.json`` / ``partial.md`` so they never replace a full run.

Modules: ``harness`` (server, timing, statistics, machine description), ``report`` (JSON and Markdown), and one
module per scenario (``exec_overhead``, ``headline``, ``shared_env``, ``import_scan``, ``node``, ``concurrency``,
``footprint``), each exposing ``run(bench) -> Scenario``.
"""
