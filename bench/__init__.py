"""Benchmark harness: commandcentre side by side with snmp_exporter and mqtt2prometheus.

Run ``./dev bench`` (or ``python -m bench --help``); see ``bench/README.md``.
"""
