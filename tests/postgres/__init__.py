"""Tests of the PostgreSQL index back-end (skipped when no server answers on 127.0.0.1:5432)."""
