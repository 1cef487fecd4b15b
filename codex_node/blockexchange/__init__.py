"""Block exchange with other peers: holds nothing yet (the network issue brings it)."""
