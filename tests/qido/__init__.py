"""Tests for QIDO-RS: matching, models, search and routes."""
