"""The network's peers: the node key and peer id, signed peer records, bootstrap and peer exchange, and who has
which content (``port.py`` is what the block exchange sees of it)."""
