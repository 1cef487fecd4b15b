"""One module per group of API routes (data, sales, debug)."""
