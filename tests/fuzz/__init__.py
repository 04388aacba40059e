"""Fuzz harnesses for every parser of untrusted input (see ``README.md`` in this directory).

``world`` is one fixed configuration with its keys, tokens and a decision service; ``targets`` holds one
harness per parser, each a plain function that raises ``AssertionError`` (or lets an unexpected exception out)
when its property breaks; ``strategies`` generates their inputs with hypothesis. ``tests/test_fuzz.py`` runs
every harness for a bounded number of examples in the default test run; ``atheris_sas.py`` and
``atheris_jwt.py`` drive the same harnesses with coverage-guided atheris, by hand.
"""
