"""Inputs that gave 500 in the adversarial sweep of issue 14 get 4xx answers now."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from dwdaemon.web.errors import ApiError
from dwdaemon.web.wado_rs import WadoService
from tests.support import start_daemon

META = 'multipart/related; type="application/dicom+json"; boundary=xx'


def metadata_body(doc: bytes) -> bytes:
    return b"--xx\r\nContent-Type: application/dicom+json\r\n\r\n" + doc + b"\r\n--xx--\r\n"


class StowInputTests(TestCase):
    @inlineCallbacks
    def stow(self, body: bytes, content_type: str = META) -> Any:
        daemon = getattr(self, "daemon", None) or start_daemon(self)
        self.daemon = daemon
        response, content = yield daemon.request(
            "POST", "/dicom-web/studies", data=body, headers={"Content-Type": content_type})
        return response.code, content

    @inlineCallbacks
    def test_attribute_values_of_the_wrong_type(self) -> None:
        for doc in (b'[{"00080016": 5}]', b'[{"00080016": {"vr": "UI", "Value": "x"}}]',
                    b'[{"00080016": {"vr": "UI", "Value": [[1]]}, "00080018": []}]',
                    b'[{"00080016": {"vr": "UI", "Value": ["1.2"]}, '
                    b'"00080018": {"vr": "UI", "Value": ["1.3"]}, "7FE00010": 7}]'):
            code, content = yield self.stow(metadata_body(doc))
            self.assertEqual(code, 400, doc)  # every failure is 0xC000 (cannot understand)
            # nothing stored; no FailedSOPSequence item without both UIDs (as Orthanc)
            self.assertNotIn("Value", json.loads(content)["00081199"])

    @inlineCallbacks
    def test_deeply_nested_json(self) -> None:
        for doc in (b"[" * 100000 + b"]" * 100000, b'{"a":' * 50000 + b"1" + b"}" * 50000):
            code, content = yield self.stow(metadata_body(doc))
            self.assertEqual(code, 400)
            self.assertNotIn("Value", json.loads(content)["00081199"])

    @inlineCallbacks
    def test_long_boundary(self) -> None:
        boundary = "a" * 300
        code, content = yield self.stow(
            f"--{boundary}--\r\n".encode(),
            f'multipart/related; type="application/dicom"; boundary={boundary}')
        self.assertEqual(code, 400)
        self.assertIn("boundary", json.loads(content)["Message"])
        self.assertEqual(self.flushLoggedErrors(), [])


    @inlineCallbacks
    def test_deeply_nested_dicom_part(self) -> None:
        """Refused (400: 0xC000 only), one warning line, no traceback (the issue saw 2,000)."""
        from twisted.logger import globalLogPublisher

        from tests.fuzz.test_ingest_fuzz import nested

        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        part = b"--xx\r\nContent-Type: application/dicom\r\n\r\n" + nested(1000) + b"\r\n--xx--"
        code, content = yield self.stow(part, 'multipart/related; type="application/dicom"; '
                                              "boundary=xx")
        self.assertEqual(code, 400)
        self.assertEqual(self.flushLoggedErrors(), [])
        warnings = [e for e in events if e.get("log_level") is not None
                    and e["log_level"].name == "warn"]
        self.assertEqual(len(warnings), 1)
        self.assertIn("nested too deeply", warnings[0]["line"])
        self.assertFalse([e for e in events if e.get("log_failure") is not None])


class PixelAdmissionTests(TestCase):
    def test_queue_over_the_limit_is_503(self) -> None:
        class Pools:
            backlog_size = 0

            def backlog(self, pool: str) -> int:
                return self.backlog_size

        class Config:
            maximum_pixel_queue = 3

        class Ctx:
            store = None
            pools = Pools()
            config = Config()

        service = WadoService(Ctx.config, None, Ctx.store, Ctx.pools)  # type: ignore[arg-type]
        service.admit_pixel_work()
        Ctx.pools.backlog_size = 3
        with self.assertRaises(ApiError) as caught:
            service.admit_pixel_work()
        self.assertEqual(caught.exception.status, 503)
        self.assertIn("MaximumPixelQueue", caught.exception.message)
        Ctx.config.maximum_pixel_queue = 0  # no limit
        service.admit_pixel_work()
