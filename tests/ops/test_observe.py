"""Request ids, access log events and Prometheus metrics of a real daemon."""

from __future__ import annotations

import base64
import json
import warnings

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.defer import inlineCallbacks
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from tests.support import read, start_daemon, testdata


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(name, sorted labels): value}`` of a scrape, parsed by prometheus_client."""
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def stow_body(*names: str) -> tuple[bytes, dict[str, list[str]]]:
    parts = b"".join(b"--XX\r\nContent-Type: application/dicom\r\n\r\n" + read(testdata(n))
                     + b"\r\n" for n in names)
    body = parts + b"--XX--\r\n"
    return body, {"Content-Type": ['multipart/related; type="application/dicom"; boundary=XX']}


class RequestIdTests(TestCase):
    def setUp(self) -> None:
        self.daemon = start_daemon(self)

    @inlineCallbacks
    def test_every_answer_has_a_request_id(self) -> None:
        ids = set()
        for method, path in (("GET", "/system"), ("GET", "/nothing"), ("DELETE", "/system"),
                             ("GET", "/dicom-web/studies?PatientName=x")):
            response, _ = yield self.daemon.request(method, path)
            (rid,) = response.headers.getRawHeaders("x-request-id")
            self.assertRegex(rid, r"^[0-9a-f]{32}$")
            ids.add(rid)
        self.assertEqual(len(ids), 4)

    @inlineCallbacks
    def test_a_sane_client_id_is_kept_and_a_bad_one_replaced(self) -> None:
        response, _ = yield self.daemon.request("GET", "/system",
                                                headers={"X-Request-Id": ["trace-42.a"]})
        self.assertEqual(response.headers.getRawHeaders("x-request-id"), ["trace-42.a"])
        response, _ = yield self.daemon.request("GET", "/system",
                                                headers={"X-Request-Id": ["a b<script>"]})
        self.assertNotEqual(response.headers.getRawHeaders("x-request-id"), ["a b<script>"])

    @inlineCallbacks
    def test_access_event_carries_id_route_status_duration_client(self) -> None:
        events: list[dict] = []

        def observe(event: dict) -> None:
            if event.get("log_namespace") == "dwdaemon.access":
                events.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        study = "1.2.3.4"
        response, _ = yield self.daemon.request("GET", f"/dicom-web/studies/{study}/metadata")
        self.assertEqual(response.code, 404)
        (event,) = [e for e in events if e["uri"].endswith("/metadata")]
        self.assertEqual(event["request_id"], response.headers.getRawHeaders("x-request-id")[0])
        self.assertEqual(event["route"], "/dicom-web/studies/<string:study>/metadata")
        self.assertEqual(event["status"], 404)
        self.assertEqual(event["client"], "127.0.0.1")
        self.assertGreater(event["duration"], 0)


class MetricsTests(TestCase):
    def setUp(self) -> None:
        warnings.simplefilter("ignore")
        self.addCleanup(warnings.resetwarnings)

    @inlineCallbacks
    def scrape(self, daemon, path: str = "/metrics") -> dict:
        response, body = yield daemon.request("GET", path)
        self.assertEqual(response.code, 200, body)
        self.assertTrue(response.headers.getRawHeaders("content-type")[0]
                        .startswith("text/plain"))
        return samples(body)

    @inlineCallbacks
    def test_scrape_after_stow_qido_wado(self) -> None:
        daemon = start_daemon(self)
        body, headers = stow_body("CT_small.dcm", "MR_small.dcm")
        bad = body.replace(b"--XX--", b"--XX\r\nContent-Type: application/dicom\r\n\r\n"
                           b"not dicom\r\n--XX--")
        response, _ = yield daemon.request("POST", "/dicom-web/studies", data=bad,
                                           headers=headers)
        self.assertEqual(response.code, 202)
        response, _ = yield daemon.request("POST", "/dicom-web/studies", data=body,
                                           headers=headers)
        self.assertEqual(response.code, 200)
        response, found = yield daemon.request("GET", "/dicom-web/studies")
        study = json.loads(found)[0]["0020000D"]["Value"][0]
        yield daemon.request("GET", f"/dicom-web/studies/{study}/metadata")
        yield daemon.request("GET", f"/dicom-web/studies/{study}/rendered")
        s = yield self.scrape(daemon)
        size = len(read(testdata("CT_small.dcm"))) + len(read(testdata("MR_small.dcm")))
        self.assertEqual(s[("dwdaemon_ingested_instances_total", (("status", "Success"),))], 2)
        self.assertEqual(
            s[("dwdaemon_ingested_instances_total", (("status", "AlreadyStored"),))], 2)
        self.assertEqual(s[("dwdaemon_ingested_bytes_total", ())], size)
        self.assertEqual(
            s[("dwdaemon_stow_refused_instances_total", (("reason", "cannot-understand"),))], 1)
        self.assertEqual(s[("dwdaemon_http_requests_total", (
            ("method", "POST"), ("route", "/dicom-web/studies"), ("status", "202")))], 1)
        self.assertEqual(s[("dwdaemon_http_requests_total", (
            ("method", "POST"), ("route", "/dicom-web/studies"), ("status", "200")))], 1)
        for service in ("stow", "qido", "wado", "rendered"):
            self.assertGreaterEqual(s[("dwdaemon_http_request_duration_seconds_count",
                                       (("service", service),))], 1, service)
        self.assertEqual(s[("dwdaemon_index_resources", (("level", "instances"),))], 2)
        self.assertEqual(s[("dwdaemon_index_resources", (("level", "studies"),))], 2)
        self.assertEqual(s[("dwdaemon_storage_bytes", ())], size)
        self.assertEqual(s[("dwdaemon_jobs", (("state", "Running"),))], 0)
        for pool in ("parse", "io", "ingest", "db_read", "db_write"):
            self.assertIn(("dwdaemon_threadpool_queue_depth", (("pool", pool),)), s)
        # Orthanc's route answers the same document.
        again = yield self.scrape(daemon, "/tools/metrics-prometheus")
        self.assertEqual(again[("dwdaemon_storage_bytes", ())], size)

    @inlineCallbacks
    def test_daemons_do_not_share_counts(self) -> None:
        one = start_daemon(self)
        two = start_daemon(self)
        yield one.request("POST", "/instances", data=read(testdata("CT_small.dcm")))
        a = yield self.scrape(one)
        b = yield self.scrape(two)
        self.assertEqual(a[("dwdaemon_ingested_instances_total", (("status", "Success"),))], 1)
        self.assertNotIn(("dwdaemon_ingested_instances_total", (("status", "Success"),)), b)

    @inlineCallbacks
    def test_same_auth_as_the_rest_unless_loopback_exempted(self) -> None:
        users = {"alice": "secret"}
        daemon = start_daemon(self, authentication_enabled=True, registered_users=users)
        response, _ = yield daemon.request("GET", "/metrics")
        self.assertEqual(response.code, 401)
        token = base64.b64encode(b"alice:secret").decode()
        response, _ = yield daemon.request("GET", "/metrics",
                                           headers={"Authorization": [f"Basic {token}"]})
        self.assertEqual(response.code, 200)
        free = start_daemon(self, authentication_enabled=True, registered_users=users,
                            metrics_loopback_without_auth=True)
        response, _ = yield free.request("GET", "/metrics")
        self.assertEqual(response.code, 200)
        response, _ = yield free.request("GET", "/system")
        self.assertEqual(response.code, 401)

    @inlineCallbacks
    def test_disabled(self) -> None:
        daemon = start_daemon(self, metrics_enabled=False)
        response, body = yield daemon.request("GET", "/metrics")
        self.assertEqual(response.code, 404)
        self.assertEqual(json.loads(body)["HttpStatus"], 404)
