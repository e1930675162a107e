"""Benchmark sections of the bench report (``make bench``): each writes
``<out>/sections/<name>.json`` and ``<name>.md``, which ``python -m tools.bench``
appends to ``report.md``; every section can be re-run on its own."""
