"""Local storage: the block files, the LevelDB metadata store, the quota, datasets, upload sessions and block expiry."""
