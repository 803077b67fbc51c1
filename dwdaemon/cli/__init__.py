"""The ``dwdaemon`` command line: ``import``, ``check-config``, ``verify``."""
