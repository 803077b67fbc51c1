"""dwdaemon.store."""
