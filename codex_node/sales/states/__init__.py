"""One module per state of a sales agent (SaleDownloading, SaleFilling, …), each a small class with pure hooks."""
