"""The web page at ``/``: served from the package, guarded like the API, switchable."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from dwdaemon.config import ConfigError, parse_config
from dwdaemon.dicom.ids import orthanc_hash
from dwdaemon.web import webpage
from tests.support import start_daemon

STATIC = os.path.join(os.path.dirname(webpage.__file__), "static")


def basic(user: str, password: str) -> dict[str, list[bytes]]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": [f"Basic {token}".encode()]}


def header(response, name: str) -> str | None:
    return response.headers.getRawHeaders(name, [None])[0]


class ServingTests(TestCase):
    def setUp(self) -> None:
        self.daemon = start_daemon(
            self, explorer_viewer_url="http://viewer.example/v?StudyInstanceUIDs={StudyInstanceUID}")

    @inlineCallbacks
    def test_index(self) -> None:
        """``/`` is the page: HTML, no caching without revalidation, a strict CSP."""
        response, body = yield self.daemon.request("GET", "/")
        self.assertEqual(response.code, 200)
        self.assertEqual(header(response, "Content-Type"), "text/html; charset=utf-8")
        self.assertIn(b'<script src="/app/app.js"', body)
        self.assertEqual(header(response, "Cache-Control"), "no-cache")
        self.assertIn("default-src 'self'", header(response, "Content-Security-Policy"))
        self.assertEqual(header(response, "X-Content-Type-Options"), "nosniff")
        self.assertEqual(response.length, len(body))
        # Orthanc Explorer's address serves the same page
        response2, body2 = yield self.daemon.request("GET", "/app/explorer.html")
        self.assertEqual((response2.code, body2), (200, body))

    @inlineCallbacks
    def test_etag(self) -> None:
        """A client holding the current file gets 304 without a body."""
        response, _ = yield self.daemon.request("GET", "/app/app.js")
        etag = header(response, "ETag")
        self.assertTrue(etag.startswith('"'))
        again, body = yield self.daemon.request(
            "GET", "/app/app.js", headers={"If-None-Match": ['"other", ' + etag]})
        self.assertEqual((again.code, body), (304, b""))
        stale, body = yield self.daemon.request(
            "GET", "/app/app.js", headers={"If-None-Match": ['"other"']})
        self.assertEqual(stale.code, 200)
        self.assertTrue(body)

    @inlineCallbacks
    def test_assets(self) -> None:
        """Every shipped file is served with its content type and exact bytes."""
        types = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8",
                 "svg": "image/svg+xml", "html": "text/html; charset=utf-8"}
        for name in sorted(os.listdir(STATIC)):
            response, body = yield self.daemon.request("GET", "/app/" + name)
            self.assertEqual(response.code, 200, name)
            with open(os.path.join(STATIC, name), "rb") as fp:
                self.assertEqual(body, fp.read(), name)
            self.assertEqual(header(response, "Content-Type"), types[name.rsplit(".", 1)[1]], name)

    @inlineCallbacks
    def test_config_json(self) -> None:
        """The page learns the DICOMweb root and the viewer URL; no secret is in it."""
        response, body = yield self.daemon.request("GET", "/app/config.json")
        self.assertEqual(response.code, 200)
        doc = json.loads(body)
        self.assertEqual(doc["DicomWebRoot"], "/dicom-web/")
        self.assertEqual(doc["ViewerUrl"],
                         "http://viewer.example/v?StudyInstanceUIDs={StudyInstanceUID}")
        self.assertIs(doc["DicomWebEnabled"], True)
        self.assertNotIn("RegisteredUsers", doc)

    @inlineCallbacks
    def test_unknown_file(self) -> None:
        """A missing file (or a path that climbs out) is a JSON 404, never a file of the host."""
        for path in ("/app/nope.js", "/app/../setup.py", "/app/%2e%2e/%2e%2e/setup.py",
                     "/app/static/app.js", "/app/..%2fwebpage.py"):
            response, body = yield self.daemon.request("GET", path)
            self.assertEqual(response.code, 404, path)
            self.assertEqual(json.loads(body)["HttpStatus"], 404, path)

    @inlineCallbacks
    def test_wrong_method(self) -> None:
        response, body = yield self.daemon.request("POST", "/", data=b"x")
        self.assertEqual(response.code, 405)
        self.assertEqual(json.loads(body)["HttpStatus"], 405)


class RootTests(TestCase):
    @inlineCallbacks
    def test_other_root(self) -> None:
        """``DicomWeb.Root`` reaches the page through config.json."""
        from dwdaemon.config import DicomWebConfig

        daemon = start_daemon(self, dicomweb=DicomWebConfig(root="/dw/"))
        _, body = yield daemon.request("GET", "/app/config.json")
        doc = json.loads(body)
        self.assertEqual((doc["DicomWebRoot"], doc["ViewerUrl"]), ("/dw/", ""))


class NoDicomWebTests(TestCase):
    @inlineCallbacks
    def test_dicomweb_disabled(self) -> None:
        """With ``DicomWeb.Enable: false`` the page is still served and says so to its script."""
        from dwdaemon.config import DicomWebConfig

        daemon = start_daemon(self, dicomweb=DicomWebConfig(enable=False))
        response, _ = yield daemon.request("GET", "/")
        self.assertEqual(response.code, 200)
        _, body = yield daemon.request("GET", "/app/config.json")
        self.assertIs(json.loads(body)["DicomWebEnabled"], False)


class SwitchTests(TestCase):
    @inlineCallbacks
    def test_disabled(self) -> None:
        """``OrthancExplorerEnabled: false``: the API only; ``/`` and ``/app/`` answer 404."""
        daemon = start_daemon(self, orthanc_explorer_enabled=False)
        for path in ("/", "/app/explorer.html", "/app/app.js", "/app/config.json"):
            response, body = yield daemon.request("GET", path)
            self.assertEqual(response.code, 404, path)
            self.assertEqual(json.loads(body)["HttpStatus"], 404)
        response, _ = yield daemon.request("OPTIONS", "/")  # the capabilities stay
        self.assertEqual(response.code, 200)
        response, _ = yield daemon.request("GET", "/system")
        self.assertEqual(response.code, 200)


class AuthTests(TestCase):
    def setUp(self) -> None:
        self.daemon = start_daemon(self, authentication_enabled=True,
                                   registered_users={"alice": "secret"})

    @inlineCallbacks
    def test_needs_credentials(self) -> None:
        """The page and its files ask for the same Basic credentials as the API."""
        for path in ("/", "/app/app.js", "/app/config.json", "/app/nope.js"):
            response, body = yield self.daemon.request("GET", path)
            self.assertEqual(response.code, 401, path)
            self.assertIn("Basic", header(response, "WWW-Authenticate"))
            self.assertEqual(json.loads(body)["HttpStatus"], 401)
        response, _ = yield self.daemon.request("GET", "/", headers=basic("alice", "wrong"))
        self.assertEqual(response.code, 401)
        response, body = yield self.daemon.request("GET", "/", headers=basic("alice", "secret"))
        self.assertEqual(response.code, 200)
        self.assertIn(b"<html", body)


class PackageTests(SynchronousTestCase):
    def test_references_exist(self) -> None:
        """Every ``/app/...`` file the page names is shipped; nothing comes from elsewhere."""
        with open(os.path.join(STATIC, "index.html"), encoding="utf-8") as fp:
            html = fp.read()
        names = set(re.findall(r'(?:src|href)="/app/([^"]+)"', html))
        self.assertTrue({"app.js", "style.css", "sha1.js", "favicon.svg"} <= names)
        for name in names:
            self.assertTrue(os.path.isfile(os.path.join(STATIC, name)), name)
        for name in os.listdir(STATIC):
            with open(os.path.join(STATIC, name), encoding="utf-8") as fp:
                text = fp.read()
            # no CDN, no external fonts: the only absolute URLs are the SVG namespace
            urls = set(re.findall(r"https?://[^\s\"'`)]+", text))
            self.assertLessEqual(urls, {"http://www.w3.org/2000/svg"}, name)

    def test_package_data(self) -> None:
        """setup.py ships ``static/*``: the folder must stay flat for that glob."""
        self.assertFalse([n for n in os.listdir(STATIC)
                          if os.path.isdir(os.path.join(STATIC, n))])
        setup_py = os.path.join(os.path.dirname(STATIC), "..", "..", "setup.py")
        with open(setup_py, encoding="utf-8") as fp:
            self.assertIn('"dwdaemon.web": ["static/*"]', fp.read())

    def test_loaded_assets(self) -> None:
        assets = webpage.load_assets()
        self.assertEqual(set(assets), set(os.listdir(STATIC)))
        self.assertEqual(assets["style.css"].content_type, "text/css; charset=utf-8")


class ConfigKeyTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        config, warnings = parse_config("{}")
        self.assertIs(config.orthanc_explorer_enabled, True)
        self.assertEqual(config.explorer_viewer_url, "")
        self.assertEqual(warnings, [])

    def test_values(self) -> None:
        config, warnings = parse_config(
            '{"OrthancExplorerEnabled": false, "ExplorerViewerUrl": '
            '"/ohif/viewer?StudyInstanceUIDs={StudyInstanceUID}"}')
        self.assertIs(config.orthanc_explorer_enabled, False)
        self.assertEqual(config.explorer_viewer_url,
                         "/ohif/viewer?StudyInstanceUIDs={StudyInstanceUID}")
        self.assertEqual(warnings, [])

    def test_wrong_values(self) -> None:
        for text, key in (('{"OrthancExplorerEnabled": "no"}', "OrthancExplorerEnabled"),
                          ('{"ExplorerViewerUrl": "javascript:alert(1)"}', "ExplorerViewerUrl"),
                          ('{"ExplorerViewerUrl": 3}', "ExplorerViewerUrl"),
                          ('{"ExplorerViewerUrl": "viewer/{StudyInstanceUID}"}',
                           "ExplorerViewerUrl")):
            with self.assertRaises(ConfigError) as caught:
                parse_config(text)
            self.assertIn(key, str(caught.exception))


class OrthancIdTests(SynchronousTestCase):
    """The page computes Orthanc identifiers (to delete and send) in plain JavaScript."""

    def test_same_as_python(self) -> None:
        node = shutil.which("node")
        if node is None:
            raise self.skipTest("node is not installed")  # type: ignore[misc]
        cases = [("",), ("1CT1",), ("1CT1", "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"),
                 ("Müller", "1.2", "1.2.3", "1.2.3.4"), ("x" * 200,), ("a" * 55,), ("a" * 56,)]
        script = (f"eval(require('fs').readFileSync({json.dumps(os.path.join(STATIC, 'sha1.js'))},"
                  "'utf8').replace(/window\\./g,'globalThis.'));"
                  "const cases=JSON.parse(process.argv[1]);"
                  "console.log(JSON.stringify(cases.map((c)=>orthancId(...c))));")
        out = subprocess.run([node, "-e", script, json.dumps(cases)], capture_output=True,
                             text=True, timeout=60, check=True).stdout
        self.assertEqual(json.loads(out), [orthanc_hash(*c) for c in cases])
