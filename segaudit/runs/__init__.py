"""Runs: the folder a command writes, published atomically, and read back by later ones.

:mod:`~segaudit.runs.rundir` builds, locks, publishes and opens runs;
:mod:`~segaudit.runs.chunkstore` writes their per-pixel Zarr arrays.
"""
