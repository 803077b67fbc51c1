"""Property-based tests (hypothesis) of every parser of untrusted input.

A short, derandomised run is the default (suitable for CI and the whole suite).
``DWDAEMON_FUZZ=long`` runs many more examples (``DWDAEMON_FUZZ_EXAMPLES``, default 5000, per
property) with fresh randomness and prints how many examples each property ran at exit.
"""
