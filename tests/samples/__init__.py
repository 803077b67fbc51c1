"""Tests of the programs in samples/: each runs as a subprocess against a real daemon."""
