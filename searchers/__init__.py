"""Searches that emit genotype specs, clients of ``rspnet_zoo``'s public names only: one subpackage per method
(``rspnet``: the two-stage RSPNet search; ``template``: nas-segm's template search), with what both share
beside them (``requests``: names, files and command lines of a run, refused without torch; ``run_folders``:
run folders, resumable checkpoints and spec writing; ``progress``: plans, estimates and progress for people)."""
