"""Benchmarks of rtcscope-server, each figure a ratio against a baseline
measured in the same invocation (`make bench`; see docs/PERFORMANCE.md)."""
