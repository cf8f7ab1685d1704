"""Save/load benchmarks of every checkpoint format: ``ckpt-harness bench``, ``bench-compare``, ``bench-plot``.

- :mod:`~harness.bench.payload` builds a model of the requested size and each format's payload;
- :mod:`~harness.bench.operations` times save, save + fsync, load and mmap load, and the
  baselines (memcpy, raw write, raw write + fsync, raw read) on the same bytes;
- :mod:`~harness.bench.touch` reads every loaded byte inside the timed region;
- :mod:`~harness.bench.pagecache` makes files verifiably warm or cold;
- :mod:`~harness.bench.rss` measures peak RSS during a load in a separate process;
- :mod:`~harness.bench.bench_formats` and :mod:`~harness.bench.plugin` run it all under
  pytest-benchmark (:mod:`~harness.bench.runner`);
- :mod:`~harness.bench.results`, :mod:`~harness.bench.compare` and :mod:`~harness.bench.plots`
  read the JSON back, gate regressions and draw the charts.
"""
