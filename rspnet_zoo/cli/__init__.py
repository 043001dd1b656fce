"""The command line: a thin shell over the library (``app``: the root and its command table; one
``*_commands`` module per group of commands; ``options``: option types shared by commands).

Every command parses, makes one library call and renders; torch-side modules are imported inside the
command functions so that ``--help``, ``--version`` and ``validate`` run without torch or timm.
"""
