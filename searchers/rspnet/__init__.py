"""The two-stage RSPNet search (arXiv 2210.00698): a DARTS cell search, then a path search over the
multi-resolution lattice, optionally latency-aware. ``runner.search`` is the entry point."""
