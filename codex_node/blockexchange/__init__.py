"""Block exchange with other peers over HTTP: fetching verified blocks, a sale's slot from the network, and
rebuilding a lost slot from the others (``port.py`` holds the seams between those parts)."""
