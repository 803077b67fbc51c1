"""dwdaemon.client."""
