"""gcgate's benchmarks: each figure of issue 6 against a baseline run beside it.

``python -m bench`` (``make bench``) runs them all and writes docs/benchmarks.md;
``--quick`` is the CI smoke run. See bench/notes.md for what each figure measures.
"""
