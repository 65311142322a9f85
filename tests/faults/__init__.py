"""The fault matrix (``pytest -m faults``): kill -9, S3 faults, cut connections, quotas, full disks.

Trial counts are small by default (CI); ``MAILVAULT_FAULT_TRIALS=full`` (or a number) raises them, and
``scripts/fault_matrix.py`` runs the tier with full counts and writes ``docs/RELIABILITY.md``.
"""
