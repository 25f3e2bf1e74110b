"""Experiments built on jconv: training a CNN, benchmarks, sharding reports."""
