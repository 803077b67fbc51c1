"""The real OHIF viewer, served from another origin, shows a study from dwdaemon (CORS).

OHIF's built ``dist/`` (npm ``@ohif/app``) is served by a small static site on one loopback
port with ``etc/ohif/app-config.js`` pointed at a daemon on another port; Debian's Chromium,
driven by ``puppeteer-core`` (``check_ohif.mjs``), opens the study list and the study: the study
must be listed, the viewport must show non-blank pixels, the series thumbnail must load and no
request may fail.  Screenshots
are left in ``tests/ohif/out/<test>/`` (git-ignored).  About 10 s per viewer run.

Needs ``node``, ``/usr/bin/chromium`` (or ``$CHROMIUM``) and ``tests/ohif/setup.sh`` run once;
skips with the reason otherwise.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import shutil
from collections.abc import Callable
from typing import Any

import pydicom
from pydicom.uid import generate_uid
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SkipTest, TestCase

from dwdaemon.config import CorsConfig
from tests.ohif.ohif_static import ohif_site
from tests.support import read, start_daemon, testdata

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DIST = os.path.join(HERE, "node_modules", "@ohif", "app", "dist")
CONFIG_JS = os.path.join(REPO, "etc", "ohif", "app-config.js")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
DESCRIPTION = "CORS OHIF check"


def missing() -> str | None:
    """Why the browser test cannot run here (None when it can)."""
    if shutil.which("node") is None:
        return "node is not installed (apt-get install nodejs npm)"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set $CHROMIUM)"
    if not os.path.isdir(os.path.join(HERE, "node_modules", "puppeteer-core")):
        return "puppeteer-core is not installed: run tests/ohif/setup.sh"
    if not os.path.isfile(os.path.join(DIST, "index.html")):
        return "OHIF's dist/ is not installed: run tests/ohif/setup.sh"
    return None


def ct_series(count: int) -> tuple[str, list[bytes]]:
    """A study of one CT series of ``count`` slices made from pydicom's ``CT_small.dcm``."""
    base = pydicom.dcmread(testdata("CT_small.dcm"))
    study, series = generate_uid(), generate_uid()
    out = []
    for i in range(count):
        ds = copy.deepcopy(base)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.PatientName, ds.PatientID = "Cors^Check", "DWCORS1"
        ds.StudyDescription, ds.SeriesDescription = DESCRIPTION, "CT slices"
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [-158.1, -179.0, -75.7 + 2.0 * i]
        ds.SliceLocation = -75.7 + 2.0 * i
        path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"dw-ohif-{os.getpid()}.dcm")
        ds.save_as(path)
        out.append(read(path))
        os.unlink(path)
    return study, out


def app_config(daemon_url: str, basic_auth: str | None) -> bytes:
    """``etc/ohif/app-config.js`` pointed at ``daemon_url`` (the shipped example itself)."""
    with open(CONFIG_JS, encoding="utf-8") as f:
        text = f.read()
    text, n = re.subn(r"(?m)^const DWDAEMON = .*$", f"const DWDAEMON = {json.dumps(daemon_url)};",
                      text)
    assert n == 1, "etc/ohif/app-config.js: no DWDAEMON line"
    text, n = re.subn(r"(?m)^const DWDAEMON_BASIC_AUTH = .*$",
                      f"const DWDAEMON_BASIC_AUTH = {json.dumps(basic_auth)};", text)
    assert n == 1, "etc/ohif/app-config.js: no DWDAEMON_BASIC_AUTH line"
    return text.encode()


class OhifTests(TestCase):
    timeout = 240

    def setUp(self) -> None:
        reason = missing()
        if reason:
            raise SkipTest(reason)

    @inlineCallbacks
    def run_viewer(self, cors: Callable[[str], CorsConfig], users: dict[str, str] | None = None,
                   wait_ms: int = 60000) -> Any:
        """Serve OHIF on one port and a daemon with a study on another (its ``Cors`` section
        made by ``cors(viewer_origin)``); drive Chromium through the viewer."""
        site = ohif_site(DIST, b"")
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        viewer = f"http://127.0.0.1:{port.getHost().port}"
        daemon = start_daemon(self, cors=cors(viewer), authentication_enabled=bool(users),
                              registered_users=users or {})
        self.assertNotEqual(viewer, daemon.url)  # two origins
        auth = ":".join(next(iter(users.items()))) if users else None
        site.resource.config_js = app_config(daemon.url, auth)
        headers = {"Authorization": [b"Basic " + base64.b64encode(auth.encode())]} if auth \
            else None
        study, files = ct_series(10)
        for data in files:
            response, _ = yield daemon.request("POST", "/instances", data=data, headers=headers)
            self.assertEqual(response.code, 200)
        out_dir = os.path.join(HERE, "out", self._testMethodName)
        shutil.rmtree(out_dir, ignore_errors=True)
        os.makedirs(out_dir)
        env = {**os.environ, "PUPPETEER_SKIP_DOWNLOAD": "1", "CHROMIUM": CHROMIUM,
               "OHIF_TIMEOUT_MS": str(wait_ms)}
        out, err, code = yield getProcessOutputAndValue(
            shutil.which("node") or "node",
            [os.path.join(HERE, "check_ohif.mjs"), viewer, study, DESCRIPTION, out_dir],
            env=env, path=HERE)
        lines = out.decode("utf-8", "replace").strip().splitlines()
        if not lines:
            self.fail(f"check_ohif.mjs printed nothing (exit {code}): {err.decode()[-2000:]}")
        result = json.loads(lines[-1])
        result["exit"] = code
        result["screenshots"] = out_dir
        with open(os.path.join(out_dir, "result.json"), "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
        return result

    @inlineCallbacks
    def test_basic_auth_and_listed_origin(self) -> None:
        """Basic auth, CORS for the viewer's origin only: preflights pass without credentials,
        the viewer sends them on every request (etc/ohif/app-config.js)."""
        result = yield self.run_viewer(
            lambda origin: CorsConfig(enabled=True, allowed_origins=(origin,)),
            users={"alice": "s3cret"})
        self.assertTrue(result["ok"], json.dumps(result, indent=1)[:4000])
        self.assertEqual(result["failures"], [])
        self.assertGreater(result["viewport"]["litShare"], 0.05)
        self.assertGreaterEqual(result["thumbnails"], 1)  # the series thumbnail is shown

    @inlineCallbacks
    def test_any_origin_without_auth(self) -> None:
        """``"Cors": {"Enabled": true}`` alone is enough for a viewer without authentication."""
        result = yield self.run_viewer(lambda origin: CorsConfig(enabled=True))
        self.assertTrue(result["ok"], json.dumps(result, indent=1)[:4000])

    @inlineCallbacks
    def test_without_cors_the_viewer_fails(self) -> None:
        """Control: with CORS off the browser throws the answers away (the test can tell)."""
        result = yield self.run_viewer(lambda origin: CorsConfig(), wait_ms=8000)
        self.assertFalse(result["ok"])
        self.assertTrue(result["failures"], result)
        self.assertIn("blocked by CORS policy", " ".join(result["consoleErrors"]))
