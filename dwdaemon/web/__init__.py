"""dwdaemon.web."""
