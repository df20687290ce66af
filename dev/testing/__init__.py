"""What the test suite and the harnesses (``dev/soak``, ``dev/bench.py``) share: hosts run in
process or as servers, a python-tuf client, a private Redis.

One home per helper: ``tests/`` imports these, ``dev/`` never imports ``tests/``
(``tests/test_layout.py`` checks it).
"""
