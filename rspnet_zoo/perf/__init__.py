"""Measuring networks: per-unit latency tables and the latency model (``latency``), side-by-side timing
(``bench``), and the allocator setting that keeps timings free of page faults (``memory``)."""
