"""Connections spread over worker processes: shared counts and the accept wrapper (no network)."""

from __future__ import annotations

import os
import socket

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from dwdaemon.balance import (
    ABSENT,
    MAX_WAIT,
    RETRY,
    BalancedAccept,
    ConnectionCounts,
    mark_absent,
    shared_counts_fd,
)


class FakePort:
    """What BalancedAccept uses of an adopted Twisted port; its socket is a real one."""

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(8)
        self.connected = True
        self.reading = True
        self.numberAccepts = 100
        self.accepted = 0

    def doRead(self) -> None:  # noqa: N802 - Twisted's name
        self.accepted += 1

    def fileno(self) -> int:
        return self.socket.fileno()

    def stopReading(self) -> None:  # noqa: N802
        self.reading = False

    def startReading(self) -> None:  # noqa: N802
        self.reading = True


class CountsTests(SynchronousTestCase):
    def test_counts_are_shared_between_mappings(self) -> None:
        fd = shared_counts_fd(3)
        self.addCleanup(os.close, fd)
        one, two, three = (ConnectionCounts(fd, 3, slot) for slot in range(3))
        one.set(5)
        two.set(2)
        three.set(7)
        self.assertEqual((one.get(1), two.get(0), three.get(2)), (2, 5, 7))
        self.assertEqual(one.least_other(), 2)
        self.assertEqual(two.least_other(), 5)
        self.assertIsNone(ConnectionCounts(fd, 1, 0).least_other())  # a single worker

    def test_a_worker_not_started_or_ended_is_never_the_least_loaded(self) -> None:
        fd = shared_counts_fd(3)
        self.addCleanup(os.close, fd)
        one = ConnectionCounts(fd, 3, 0)
        self.assertEqual((one.get(0), one.get(1), one.get(2)), (0, ABSENT, ABSENT))
        self.assertEqual(one.least_other(), ABSENT)  # nobody else serves: no stepping aside
        two = ConnectionCounts(fd, 3, 1)
        two.set(4)
        self.assertEqual(one.least_other(), 4)
        mark_absent(fd, 1)  # worker 1 died (the parent says so)
        self.assertEqual(one.least_other(), ABSENT)


class BalancedAcceptTests(SynchronousTestCase):
    def setUp(self) -> None:
        fd = shared_counts_fd(2)
        self.addCleanup(os.close, fd)
        self.other_fd = fd
        self.mine, self.other = ConnectionCounts(fd, 2, 0), ConnectionCounts(fd, 2, 1)
        self.port = FakePort()
        self.addCleanup(self.port.socket.close)
        self.clock = Clock()
        self.open = 0
        self.balance = BalancedAccept(self.port, self.mine, lambda: self.open, self.clock,
                                      clock=self.clock.seconds)

    def test_accepts_one_at_a_time_when_not_busier(self) -> None:
        self.open = 1
        self.other.set(1)
        self.port.doRead()
        self.assertEqual(self.port.accepted, 1)
        self.assertEqual(self.port.numberAccepts, 1)
        self.balance.connection_count_changed()
        self.assertEqual(self.other.get(0), 1)

    def test_a_busier_worker_steps_aside_then_accepts_after_max_wait(self) -> None:
        self.open = 2
        self.other.set(1)
        client = socket.create_connection(self.port.socket.getsockname())
        self.addCleanup(client.close)
        self.port.doRead()
        self.assertEqual((self.port.accepted, self.port.reading), (0, False))
        self.clock.advance(RETRY)  # the connection is still pending: listen again
        self.assertTrue(self.port.reading)
        while self.clock.seconds() < MAX_WAIT:
            self.port.doRead()
            self.assertEqual(self.port.accepted, 0)
            self.clock.advance(RETRY)
        self.port.doRead()  # waited long enough: accept even though busier
        self.assertEqual(self.port.accepted, 1)

    def test_no_stepping_aside_for_a_worker_that_does_not_serve(self) -> None:
        self.open = 5
        mark_absent(self.other_fd, 1)
        self.port.doRead()
        self.assertEqual(self.port.accepted, 1)

    def test_a_wait_ends_when_another_worker_took_the_connection(self) -> None:
        self.open = 2
        self.other.set(1)
        self.port.doRead()  # nothing is pending on the real socket: another worker took it
        self.clock.advance(MAX_WAIT)
        self.clock.advance(RETRY)
        self.port.doRead()  # a new connection starts a new wait
        self.assertEqual(self.port.accepted, 0)
        self.other.set(2)  # no longer busier
        self.port.doRead()
        self.assertEqual(self.port.accepted, 1)
