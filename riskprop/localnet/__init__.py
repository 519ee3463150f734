"""Local networks of real node processes on one machine: what the demo, the benchmarks, the
tests and an evaluator's local set-up share.

``harness`` writes configuration files on free loopback ports, starts one ``riskprop`` process
per bank and waits for them; ``certs`` makes a local CA and node certificates; ``setup`` fills a
directory with certificates, a dealt key and sample data for ``configs/``; ``demo`` is
``riskprop demo``.
"""
