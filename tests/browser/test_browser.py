"""The web page in a real browser: Debian's Chromium driven by puppeteer-core (webpage.mjs).

Needs ``node``, ``/usr/bin/chromium`` (or ``$CHROMIUM``) and ``tests/browser/install.sh``
(puppeteer-core into ``tests/browser/node_modules``; nothing downloads a browser). Without them
the tests are skipped with the reason. Screenshots go to ``$DWDAEMON_SCREENSHOTS`` when set,
else to the test's temporary directory.
"""

from __future__ import annotations

import json
import os
import shutil

import pydicom
from pydicom.uid import generate_uid
from twisted.internet.defer import inlineCallbacks
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from tests.support import read, start_daemon, testdata

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "webpage.mjs")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
STORED = ("CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm")


def missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if shutil.which("node") is None:
        return "node is not installed (browser tests need node and Debian's chromium)"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (install Debian's chromium or set CHROMIUM)"
    if not os.path.isfile(os.path.join(HERE, "node_modules", "puppeteer-core", "package.json")):
        return "puppeteer-core is not installed: run tests/browser/install.sh"
    return None


class BrowserTests(TestCase):
    timeout = 240

    def setUp(self) -> None:
        reason = missing()
        if reason:
            raise self.skipTest(reason)  # type: ignore[misc]

    def files(self) -> tuple[str, str]:
        """A DICOM file of a new patient and study, and a file that is not DICOM."""
        directory = os.path.abspath(self.mktemp())  # node runs in another directory
        os.makedirs(directory)
        ds = pydicom.dcmread(testdata("CT_small.dcm"))
        ds.PatientName, ds.PatientID = "Upload^Test", "UPL-1"
        ds.StudyDescription = "Uploaded from the browser"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        dicom = os.path.join(directory, "upload.dcm")
        ds.save_as(dicom)
        bad = os.path.join(directory, "notes.txt")
        with open(bad, "w", encoding="utf-8") as fp:
            fp.write("this is not a DICOM file\n")
        return dicom, bad

    @inlineCallbacks
    def drive(self, user: str | None = None, password: str | None = None, **overrides) -> object:
        headers = {}
        if user:
            import base64

            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            headers = {"Authorization": [f"Basic {token}".encode()]}
        daemon = start_daemon(self, **overrides)
        for name in STORED:
            response, _ = yield daemon.request("POST", "/instances", data=read(testdata(name)),
                                               headers=headers)
            self.assertEqual(response.code, 200, name)
        server = {"Url": daemon.dicomweb + "/"}
        if user:
            server.update(Username=user, Password=password)
        response, _ = yield daemon.request("PUT", "/dicom-web/servers/self",
                                           data=json.dumps(server).encode(), headers=headers)
        self.assertEqual(response.code, 200)
        screens = os.environ.get("DWDAEMON_SCREENSHOTS") or os.path.abspath(self.mktemp())
        dicom, bad = self.files()
        args = [SCRIPT, "--url", daemon.url, "--screens", screens, "--dicom", dicom,
                "--bad", bad, "--expect-studies", str(len(STORED)), "--server", "self",
                "--new-patient", "Upload, Test"]
        if overrides.get("explorer_viewer_url"):
            args += ["--viewer", overrides["explorer_viewer_url"].split("?")[0]]
        if user:
            args += ["--user", user, "--password", password]
        env = dict(os.environ, PUPPETEER_SKIP_DOWNLOAD="1", CHROMIUM=CHROMIUM)
        out, err, code = yield getProcessOutputAndValue(
            shutil.which("node"), args, env=env, path=HERE)
        text = out.decode("utf-8", "replace") + err.decode("utf-8", "replace")
        self.assertEqual(code, 0, f"{text}\n(screenshots in {screens})")
        self.assertIn("ALL OK", text)
        return text

    def test_page(self) -> object:
        """Search, open a study and a series, upload (one stored, one refused), send, delete."""
        return self.drive(explorer_viewer_url="http://127.0.0.1:9/viewer?s={StudyInstanceUID}")

    def test_page_with_basic_auth(self) -> object:
        """The same with Basic authentication: the browser's credentials reach every request."""
        return self.drive("alice", "secret", authentication_enabled=True,
                          registered_users={"alice": "secret"})
