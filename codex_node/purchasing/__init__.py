"""The buying side (requests for storage from this node): holds nothing yet."""
