"""Pod and container stats and metrics: what the kubelet's summary API and /metrics/cadvisor read.

:mod:`.server` collects them (on demand or every ``[stats] collection_period``),
:mod:`.usage` turns cgroup counters into CRI usage messages and CPU rates,
:mod:`.procfs` counts what a cgroup's processes hold.
"""
