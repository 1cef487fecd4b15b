"""The validator (``--validator``): watches filled slots and marks the storage proofs their hosts missed.

``watchlist.py`` (pure: which slots of which group are watched, from the marketplace's events), ``timing.py``
(pure: which periods can be marked missing at a given time, by the contract's rules), ``metrics.py``, and
``validator.py`` (the part: restore from chain history, follow the events, one round per period).
"""
