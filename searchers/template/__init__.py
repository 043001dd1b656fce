"""Template-based search (Nekrasov et al., WACV 2020): a PPO controller samples nas-segm templates, each is
trained briefly and rewarded by its validation score. ``search.search`` is the entry point."""
