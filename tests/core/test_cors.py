"""CORS: headers on every answer of a real daemon, preflights without authentication, config."""

from __future__ import annotations

import base64
import json

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from dwdaemon.config import ConfigError, CorsConfig, parse_config
from dwdaemon.web.cors import ALLOWED_HEADERS, EXPOSED_HEADERS, CorsPolicy
from tests.core.test_security import _remote_request_class
from tests.support import read, start_daemon, testdata

VIEWER = "http://127.0.0.1:3000"
OTHER = "http://evil.example"
ALICE = "Basic " + base64.b64encode(b"alice:s3cret").decode()


def _names(value: str | list[str] | None) -> set[str]:
    """The comma-separated names of a header value (or of its raw values), lower case."""
    if isinstance(value, list):
        value = ",".join(value)
    return {v.strip().lower() for v in (value or "").split(",") if v.strip()}


def _preflight(method: str = "GET", headers: str = "authorization, accept",
               origin: str = VIEWER) -> dict[str, list[str]]:
    return {"Origin": [origin], "Access-Control-Request-Method": [method],
            "Access-Control-Request-Headers": [headers]}


class PolicyTests(SynchronousTestCase):
    """The pure decision, per configuration."""

    def test_disabled_sends_nothing(self) -> None:
        policy = CorsPolicy(CorsConfig())
        self.assertEqual(policy.response_headers(VIEWER), [])
        self.assertIsNone(policy.preflight_headers(VIEWER))

    def test_any_origin(self) -> None:
        policy = CorsPolicy(CorsConfig(enabled=True))
        headers = dict(policy.response_headers(VIEWER))
        self.assertEqual(headers["Access-Control-Allow-Origin"], "*")
        self.assertEqual(headers["Vary"], "Origin")
        self.assertNotIn("Access-Control-Allow-Credentials", headers)
        self.assertEqual(_names(headers["Access-Control-Expose-Headers"]),
                         {h.lower() for h in EXPOSED_HEADERS})
        # A request without Origin is not a CORS request: only Vary.
        self.assertEqual(policy.response_headers(None), [("Vary", "Origin")])

    def test_listed_origins_and_credentials(self) -> None:
        policy = CorsPolicy(CorsConfig(enabled=True, allowed_origins=(VIEWER,),
                                       allow_credentials=True, max_age=60,
                                       allowed_headers=("X-Request-Id", "accept")))
        headers = dict(policy.response_headers(VIEWER))
        self.assertEqual(headers["Access-Control-Allow-Origin"], VIEWER)
        self.assertEqual(headers["Access-Control-Allow-Credentials"], "true")
        # Origins compare case-insensitively (scheme and host are).
        self.assertEqual(policy.allow_origin("HTTP://127.0.0.1:3000"), "HTTP://127.0.0.1:3000")
        self.assertEqual(policy.response_headers(OTHER), [("Vary", "Origin")])
        self.assertIsNone(policy.preflight_headers(OTHER))
        self.assertIsNone(policy.allow_origin("http://127.0.0.1:3001"))
        pre = dict(policy.preflight_headers(VIEWER) or [])
        self.assertEqual(pre["Access-Control-Max-Age"], "60")
        self.assertEqual(_names(pre["Access-Control-Allow-Headers"]),
                         {h.lower() for h in ALLOWED_HEADERS} | {"x-request-id"})
        self.assertEqual(_names(pre["Access-Control-Allow-Methods"]),
                         {"get", "head", "post", "put", "delete", "options"})


class ConfigTests(SynchronousTestCase):
    def parse(self, cors: object) -> tuple[CorsConfig, list[str]]:
        config, warnings = parse_config(json.dumps({"Cors": cors}))
        return config.cors, warnings

    def test_defaults(self) -> None:
        self.assertEqual(parse_config("{}")[0].cors, CorsConfig())
        self.assertFalse(CorsConfig().enabled)
        cors, warnings = self.parse({"Enabled": True})  # one key turns it on
        self.assertEqual((cors.enabled, cors.allowed_origins, warnings), (True, ("*",), []))

    def test_origins(self) -> None:
        cors, _ = self.parse({"AllowedOrigins": ["HTTP://Localhost:3000/", "https://v.org"]})
        self.assertEqual(cors.allowed_origins, ("http://localhost:3000", "https://v.org"))
        self.assertEqual(self.parse({"AllowedOrigins": "*"})[0].allowed_origins, ("*",))
        for bad in (5, ["http://x/path"], ["localhost:3000"], [3], "http://x?y"):
            with self.assertRaises(ConfigError) as cm:
                self.parse({"AllowedOrigins": bad})
            self.assertIn("Cors.AllowedOrigins", str(cm.exception))

    def test_credentials_need_listed_origins(self) -> None:
        with self.assertRaises(ConfigError) as cm:
            self.parse({"Enabled": True, "AllowCredentials": True})
        self.assertIn("Cors.AllowCredentials", str(cm.exception))
        cors, _ = self.parse({"AllowCredentials": True, "AllowedOrigins": [VIEWER]})
        self.assertTrue(cors.allow_credentials)

    def test_other_keys(self) -> None:
        with self.assertRaises(ConfigError):
            self.parse({"MaxAge": -1})
        with self.assertRaises(ConfigError):
            self.parse({"AllowedHeaders": ["bad header"]})
        _, warnings = self.parse({"Enabled": True, "AllowedOrigins": []})
        self.assertIn("AllowedOrigins is empty", warnings[0])
        _, warnings = self.parse({"Enable": True})
        self.assertIn("did you mean Cors.Enabled", warnings[0])


class DaemonTests(TestCase):
    """A real daemon with Basic authentication and CORS for one origin."""

    def setUp(self) -> None:
        self.daemon = start_daemon(
            self, authentication_enabled=True, registered_users={"alice": "s3cret"},
            cors=CorsConfig(enabled=True, allowed_origins=(VIEWER,), max_age=120))

    def assertCors(self, response: object, origin: str = VIEWER) -> None:
        headers = response.headers  # type: ignore[attr-defined]
        self.assertEqual(headers.getRawHeaders("access-control-allow-origin"), [origin])
        self.assertEqual(headers.getRawHeaders("vary"), ["Origin"])
        self.assertTrue({"warning", "etag", "content-range", "content-location", "location"}
                        <= _names(headers.getRawHeaders("access-control-expose-headers")))
        self.assertIsNone(headers.getRawHeaders("access-control-allow-credentials"))

    @inlineCallbacks
    def test_preflight_without_credentials_on_every_route_kind(self) -> None:
        paths = ("/dicom-web/studies", "/dicom-web/studies/1.2/series/3.4/metadata",
                 "/dicom-web/studies/1.2/series/3.4/instances/5.6/frames/1",
                 "/wado?requestType=WADO&objectUID=1.2", "/system", "/instances",
                 "/studies/abc", "/no/such/route")
        for path in paths:
            for method in ("GET", "POST", "DELETE"):
                response, body = yield self.daemon.request(
                    "OPTIONS", path,
                    headers=_preflight(method, "authorization,accept,range,if-none-match"))
                self.assertEqual(response.code, 204, (path, method))
                self.assertEqual(body, b"")
                self.assertIsNone(response.headers.getRawHeaders("content-length"))
                h = response.headers
                self.assertEqual(h.getRawHeaders("access-control-allow-origin"), [VIEWER])
                self.assertIn(method.lower(),
                              _names(h.getRawHeaders("access-control-allow-methods")))
                self.assertTrue({"authorization", "accept", "content-type", "range",
                                 "if-none-match"}
                                <= _names(h.getRawHeaders("access-control-allow-headers")))
                self.assertEqual(h.getRawHeaders("access-control-max-age"), ["120"])
                self.assertIsNone(h.getRawHeaders("www-authenticate"))

    @inlineCallbacks
    def test_answers_and_errors_carry_headers(self) -> None:
        origin = {"Origin": [VIEWER]}
        auth = {"Origin": [VIEWER], "Authorization": [ALICE]}
        response, _ = yield self.daemon.request(
            "POST", "/instances", data=read(testdata("CT_small.dcm")), headers=auth)
        self.assertEqual(response.code, 200)
        self.assertCors(response)
        cases = [
            ("GET", "/dicom-web/studies", origin, 401),
            ("GET", "/dicom-web/studies", auth, 200),
            ("GET", "/system", auth, 200),
            ("GET", "/dicom-web/studies/9.9/metadata", auth, 404),
            ("GET", "/no/such/route", auth, 404),
            ("PATCH", "/system", auth, 405),
            ("GET", "/wado?requestType=WADO", auth, 400),
            # An OPTIONS that is no preflight goes to the routes (auth first).
            ("OPTIONS", "/system", origin, 401),
        ]
        for method, path, headers, code in cases:
            response, body = yield self.daemon.request(method, path, headers=headers)
            self.assertEqual(response.code, code, (method, path))
            self.assertCors(response)
            if code >= 400:
                self.assertEqual(json.loads(body)["HttpStatus"], code)
        response, body = yield self.daemon.request("GET", "/dicom-web/studies", headers=auth)
        study = json.loads(body)[0]["0020000D"]["Value"][0]
        response, _ = yield self.daemon.request(
            "GET", f"/dicom-web/studies/{study}/metadata", headers=auth)
        self.assertCors(response)
        self.assertTrue(response.headers.getRawHeaders("etag"))

    @inlineCallbacks
    def test_other_origin_gets_no_cors_headers(self) -> None:
        response, _ = yield self.daemon.request("OPTIONS", "/dicom-web/studies",
                                                headers=_preflight(origin=OTHER))
        self.assertEqual(response.code, 401)  # as without CORS: the routes answer it
        self.assertIsNone(response.headers.getRawHeaders("access-control-allow-origin"))
        self.assertIsNone(response.headers.getRawHeaders("access-control-allow-methods"))
        for headers in ({"Origin": [OTHER], "Authorization": [ALICE]},
                        {"Authorization": [ALICE]}):
            response, _ = yield self.daemon.request("GET", "/system", headers=headers)
            self.assertEqual(response.code, 200)
            self.assertIsNone(response.headers.getRawHeaders("access-control-allow-origin"))
            self.assertIsNone(response.headers.getRawHeaders("access-control-expose-headers"))
            self.assertEqual(response.headers.getRawHeaders("vary"), ["Origin"])


class VariantTests(TestCase):
    @inlineCallbacks
    def test_disabled_by_default(self) -> None:
        daemon = start_daemon(self)
        response, _ = yield daemon.request("OPTIONS", "/dicom-web/studies", headers=_preflight())
        self.assertEqual(response.code, 200)  # the route's capabilities, no CORS grant
        self.assertIsNone(response.headers.getRawHeaders("access-control-allow-origin"))
        self.assertIsNone(response.headers.getRawHeaders("access-control-allow-methods"))
        response, _ = yield daemon.request("GET", "/system", headers={"Origin": [VIEWER]})
        for name in ("access-control-allow-origin", "vary"):
            self.assertIsNone(response.headers.getRawHeaders(name))

    @inlineCallbacks
    def test_any_origin_and_credentials(self) -> None:
        daemon = start_daemon(self, cors=CorsConfig(enabled=True))
        response, _ = yield daemon.request("GET", "/system", headers={"Origin": [OTHER]})
        self.assertEqual(response.headers.getRawHeaders("access-control-allow-origin"), ["*"])
        daemon = start_daemon(self, cors=CorsConfig(enabled=True, allowed_origins=(VIEWER,),
                                                    allow_credentials=True))
        for method, headers in (("OPTIONS", _preflight()), ("GET", {"Origin": [VIEWER]})):
            response, _ = yield daemon.request(method, "/system", headers=headers)
            h = response.headers
            self.assertEqual(h.getRawHeaders("access-control-allow-origin"), [VIEWER])
            self.assertEqual(h.getRawHeaders("access-control-allow-credentials"), ["true"])

    @inlineCallbacks
    def test_early_413_carries_headers(self) -> None:
        """The 413 of MaximumUploadSize, written before routing, is readable cross-origin."""
        daemon = start_daemon(self, maximum_upload_size=1, cors=CorsConfig(enabled=True))
        response, body = yield daemon.request(
            "POST", "/dicom-web/studies", data=b"x" * (2 * 1024 * 1024),
            headers={"Origin": [VIEWER], "Content-Type": [b"multipart/related; boundary=b"]})
        self.assertEqual(response.code, 413)
        self.assertEqual(json.loads(body)["HttpStatus"], 413)
        self.assertEqual(response.headers.getRawHeaders("access-control-allow-origin"), ["*"])
        self.assertEqual(response.headers.getRawHeaders("vary"), ["Origin"])

    @inlineCallbacks
    def test_remote_access_switch_still_applies(self) -> None:
        daemon = start_daemon(self, cors=CorsConfig(enabled=True))
        daemon.site.requestFactory = _remote_request_class(daemon.site.requestFactory,
                                                           "10.1.2.3")
        response, body = yield daemon.request("OPTIONS", "/system", headers=_preflight())
        self.assertEqual(response.code, 403)
        self.assertEqual(json.loads(body)["HttpStatus"], 403)
        self.assertEqual(response.headers.getRawHeaders("access-control-allow-origin"), ["*"])
