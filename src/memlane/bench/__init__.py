"""``memlane bench``: memlane measured against the reference stores, side by side.

The scenarios live here, not in ``benchmarks/``, so that the ``memlane`` console script
can run them; ``benchmarks/writes.py`` and ``benchmarks/agent.py`` are thin wrappers.
Modules: ``plan`` (sizes and presets), ``workloads`` (the data), ``systems`` (the adapters),
``runner`` (repeats, warm-up, interleaving), ``scenarios/`` (one module per family),
``suite`` (one whole run), ``report``/``plots`` (the outputs), ``command`` (the CLI).
rich and matplotlib are optional (the ``bench`` extra) and imported only when used.
"""
