"""Measurement tools that are not part of the installed ``udic`` package.

Run from the repository root, e.g. ``python -m tools.bench``, ``python -m tools.fuzz``,
``python -m tools.benchmarks.family``, ``python -m tools.recipes``, ``python -m tools.longrun``.
They import ``udic``; nothing in ``udic`` imports them.
"""
