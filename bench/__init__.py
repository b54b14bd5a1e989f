"""Benchmarks: every figure printed beside a baseline measured in the same run, as a ratio.

The machines these run on are shared and noisy, so an absolute number means little; the
ratio to the raw library or Redis limit measured a moment earlier on the same machine is
what is compared release to release. Run all with ``make bench`` or one with
``python -m bench.<name>``.
"""
