"""dwdaemon.store.index."""
