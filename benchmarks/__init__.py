"""Benchmarks: the ``vggx bench`` harness and the scripts behind ``benchmarks/RESULTS.md``."""
