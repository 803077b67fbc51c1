"""End-to-end smoke test of the daemon over a loopback port."""

from __future__ import annotations

import json

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.support import read, start_daemon, testdata


class SmokeTests(TestCase):
    @inlineCallbacks
    def test_upload_and_download(self) -> None:
        daemon = start_daemon(self)
        data = read(testdata("CT_small.dcm"))
        response, body = yield daemon.request("POST", "/instances", data=data)
        self.assertEqual(response.code, 200)
        answer = json.loads(body)
        self.assertEqual(answer["ID"], "f689ddd2-662f8fe1-8b18180d-ec2a2cee-937917af")
        response, body = yield daemon.request("GET", f"/instances/{answer['ID']}/file")
        self.assertEqual(body, data)
