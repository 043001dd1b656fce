"""The two RSPNet searches. Stage 1 (``cell_search``) finds the cell by DARTS with partial channels;
stage 2 (``path_search``) finds the paths between resolution levels by path attention. Both emit
genotype specs through ``rspnet_zoo.spec``; ``runner.search`` is the entry point the CLI calls."""
