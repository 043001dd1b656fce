"""Training and evaluation: the loop (``loop``), multi-process helpers (``distributed``), metrics, curves,
run folders (``runs``), and the request objects the CLI hands over (``tasks``)."""
