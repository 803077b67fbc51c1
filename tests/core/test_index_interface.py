"""Every index back end implements the whole public :class:`Index` interface."""

from __future__ import annotations

import inspect

from twisted.trial.unittest import TestCase

from dwdaemon.store.index.base import Index
from dwdaemon.store.index.postgres import PostgresIndex
from dwdaemon.store.index.sqlite import SqliteIndex

METHODS = sorted(name for name, value in vars(Index).items()
                 if callable(value) and not name.startswith("_"))


class InterfaceTests(TestCase):
    def test_the_interface_covers_what_callers_use(self) -> None:
        for name in ("batch", "add_instance", "search", "explain", "changes", "lookup",
                     "instance_ids_with_file", "save_job", "jobs", "job", "forget_old_jobs",
                     "put_server", "servers"):
            self.assertIn(name, METHODS)

    def test_every_back_end_implements_it_in_full(self) -> None:
        for backend in (SqliteIndex, PostgresIndex):
            self.assertTrue(backend.backend_name)
            for name in METHODS:
                self.assertTrue(hasattr(backend, name), f"{backend.__name__}.{name}")
                wanted = list(inspect.signature(getattr(Index, name)).parameters)
                got = list(inspect.signature(getattr(backend, name)).parameters)
                self.assertEqual(got, wanted, f"{backend.__name__}.{name}")
