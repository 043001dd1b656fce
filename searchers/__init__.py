"""Searches that emit genotype specs, clients of ``rspnet_zoo``'s public names only: one subpackage per method
(``rspnet``: the two-stage RSPNet search; ``template``: nas-segm's template search), with what both share
beside them (``run_folders``: run folders, resumable checkpoints and spec writing)."""
