"""Tests of the job engine (dwdaemon.jobs) on a real SQLite index."""

from __future__ import annotations

import tempfile

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial import unittest

from dwdaemon.jobs import CANCELLED, INTERRUPTED, JobEngine
from dwdaemon.store.index.sqlite import SqliteIndex
from dwdaemon.threads import ThreadPools


class JobEngineTests(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="dwd-jobs-")
        self.pools = ThreadPools(reactor, synchronous=True)

    def engine(self, owner: str = "") -> JobEngine:
        index = SqliteIndex(self.dir)
        index.open()
        self.addCleanup(index.close)
        engine = JobEngine(index, self.pools, reactor, owner=owner)
        return engine

    @inlineCallbacks
    def test_daemons_sharing_an_index_keep_their_own_jobs(self):
        """A daemon starting never fails the running jobs of another daemon of the index."""
        a = self.engine("host:a:8042")
        yield a.load()
        gate: Deferred = Deferred()
        job = a.submit("DicomWebRetrieveClient", {"Server": "x"}, lambda handle: gate)
        yield deferLater(reactor, 0.05, lambda: None)  # let the save reach the index
        b = self.engine("host:b:8043")
        yield b.load()
        seen = yield b.lookup(job.id)
        self.assertEqual((seen.state, seen.owner), ("Running", "host:a:8042"))
        self.assertFalse(b.cancel(job.id))  # not B's to cancel
        listed = yield b.refresh_all()
        self.assertIn(job.id, [j.id for j in listed])
        gate.callback({"Instances": []})
        yield deferLater(reactor, 0.05, lambda: None)
        seen = yield b.lookup(job.id)
        self.assertEqual(seen.state, "Success")
        yield a.stop()
        yield b.stop()

    @inlineCallbacks
    def test_restart_fails_only_own_interrupted_jobs(self):
        a = self.engine("host:a:8042")
        yield a.load()
        job = a.submit("DicomWebRetrieveClient", {}, lambda handle: Deferred())
        yield a.stop()
        b = self.engine("host:b:8043")
        yield b.load()
        self.assertEqual(b.get(job.id).state, "Running")
        a_again = self.engine("host:a:8042")
        yield a_again.load()
        self.assertEqual((a_again.get(job.id).state, a_again.get(job.id).error),
                         ("Failure", INTERRUPTED))

    @inlineCallbacks
    def test_success_and_progress(self):
        engine = self.engine()
        yield engine.load()
        gate: Deferred = Deferred()
        handles = []

        def runner(handle):
            handles.append(handle)
            return gate

        job = engine.submit("DicomWebStowClient", {"Server": "x"}, runner)
        self.assertEqual(job.state, "Running")
        handles[0].progress(1, 4, {"Instances": ["a"]})
        self.assertEqual(engine.get(job.id).progress, 25)
        gate.callback({"Instances": ["a", "b"]})
        js = engine.get(job.id).to_json()
        self.assertEqual((js["State"], js["Progress"]), ("Success", 100))
        self.assertEqual(js["Result"], {"Instances": ["a", "b"]})
        yield engine.stop()
        # persisted: a new engine sees it
        again = self.engine()
        yield again.load()
        self.assertEqual(again.get(job.id).state, "Success")
        self.assertEqual(again.get(job.id).result, {"Instances": ["a", "b"]})

    @inlineCallbacks
    def test_failure_keeps_outcome(self):
        engine = self.engine()
        yield engine.load()

        class BoomError(Exception):
            outcome = None

        err = BoomError("remote DICOMweb server 'x': timed out after 1 s")

        class Out:
            def to_json(self):
                return {"Instances": ["kept"]}

        err.outcome = Out()

        def runner(handle):
            d: Deferred = Deferred()
            d.errback(err)
            return d

        job = engine.submit("DicomWebRetrieveClient", {}, runner)
        js = job.to_json()
        self.assertEqual(js["State"], "Failure")
        self.assertIn("timed out", js["ErrorDescription"])
        self.assertEqual(js["Result"], {"Instances": ["kept"]})
        self.flushLoggedErrors()

    @inlineCallbacks
    def test_cancel_running_and_pending(self):
        engine = self.engine()
        engine.concurrency = 1
        yield engine.load()
        job1 = engine.submit("t", {}, lambda h: Deferred())
        job2 = engine.submit("t", {}, lambda h: Deferred())
        self.assertEqual((job1.state, job2.state), ("Running", "Pending"))
        self.assertTrue(engine.cancel(job2.id))
        self.assertEqual((job2.state, job2.error), ("Failure", CANCELLED))
        self.assertTrue(engine.cancel(job1.id))
        self.assertEqual((job1.state, job1.error), ("Failure", CANCELLED))
        self.assertFalse(engine.cancel(job1.id))
        self.assertFalse(engine.cancel("nope"))

    @inlineCallbacks
    def test_restart_marks_interrupted(self):
        engine = self.engine()
        yield engine.load()
        job = engine.submit("t", {"Server": "s"}, lambda h: Deferred())
        running = engine._running  # noqa: SLF001 - keep a reference
        self.assertIn(job.id, running)
        # partial result written by a progress report
        from dwdaemon.jobs import JobHandle

        JobHandle(engine, job).progress(1, 2, {"Instances": ["i1"]})
        yield deferLater(reactor, 0.6, lambda: None)
        yield engine.stop()
        again = self.engine()
        yield again.load()
        old = again.get(job.id)
        self.assertEqual((old.state, old.error), ("Failure", INTERRUPTED))
        self.assertEqual(old.result, {"Instances": ["i1"]})
        newer = again.submit("t", {}, lambda h: {"ok": 1})
        self.assertGreater(newer.seq, old.seq)

    def test_servers_table(self):
        index = SqliteIndex(self.dir)
        index.open()
        self.addCleanup(index.close)
        index.put_server("a", '{"Url": "http://a/"}')
        index.put_server("b", None)
        index.put_server("a", '{"Url": "http://a2/"}')
        self.assertEqual(sorted(index.servers()),
                         [("a", '{"Url": "http://a2/"}'), ("b", None)])
