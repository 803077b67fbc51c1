"""The JavaScript samples (samples/js): the Node script and the browser page.

They need ``node`` and the npm packages of samples/js (``samples/js/install.sh``); the page
also needs Chromium and a daemon with CORS support. Each test skips, saying why, when
something is missing.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
from urllib.parse import urlencode

import pydicom
from PIL import Image
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial import unittest
from twisted.web import server, static

from tests.support import testdata

from .support import (
    JS_SAMPLES,
    PASSWORD,
    USER,
    auth_args,
    auth_env,
    chromium,
    js_skip_reason,
    node,
    run,
    start_secured,
    upload,
)


def cors_config(origin: str):
    """A ``Cors`` section allowing ``origin``, or None when the daemon has no CORS support."""
    try:
        from dwdaemon.config import CorsConfig  # the Cors section (branch cors)
    except ImportError:
        return None
    return CorsConfig(enabled=True, allowed_origins=(origin,))


class NodeSample(unittest.TestCase):
    """search_and_render.mjs: search, study metadata, rendered JPEG."""

    timeout = 120

    def setUp(self) -> None:
        reason = js_skip_reason()
        if reason:
            raise unittest.SkipTest(reason)

    @inlineCallbacks
    def test_search_then_metadata_and_rendered_image(self):
        daemon = start_secured(self)
        yield upload(self, daemon, [testdata("CT_small.dcm"), testdata("MR_small.dcm")])
        ct = pydicom.dcmread(testdata("CT_small.dcm"), stop_before_pixels=True)
        out = os.path.abspath(self.mktemp())

        result = yield run(node(), ["search_and_render.mjs", *auth_args(daemon), "--out", out,
                                    "PatientName=*CT*"], cwd=JS_SAMPLES)
        self.assertEqual(result.code, 0, result)
        self.assertIn("1 studies", result.out)
        self.assertIn(str(ct.StudyInstanceUID), result.out)
        self.assertIn("metadata of 1 instances", result.out)
        self.assertIn(f"rendering instance {ct.SOPInstanceUID} (128x128)", result.out)
        with open(out, "rb") as fp:
            data = fp.read()
        self.assertIn(f"rendered image: {len(data)} bytes", result.out)
        image = Image.open(io.BytesIO(data))
        self.assertEqual((image.format, image.size), ("JPEG", (128, 128)))

        # URL and credentials from the environment; no match: exit 1 with a message
        result = yield run(node(), ["search_and_render.mjs", "PatientName=Nobody"],
                           env=auth_env(daemon), cwd=JS_SAMPLES)
        self.assertEqual(result.code, 1, result)
        self.assertIn("0 studies", result.out)
        self.assertIn("error: no study matches", result.err)

        result = yield run(node(), ["search_and_render.mjs", "--url", daemon.dicomweb,
                                    "--user", USER, "--password", "wrong"], cwd=JS_SAMPLES)
        self.assertEqual(result.code, 1, result)
        self.assertIn("error: request failed (HTTP 401)", result.err)


class BrowserPage(unittest.TestCase):
    """browser/index.html in headless Chromium, served from another origin than the daemon."""

    timeout = 120

    def setUp(self) -> None:
        reason = js_skip_reason()
        if reason is None and chromium() is None:
            reason = "Chromium is not installed (Debian: apt-get install chromium)"
        if reason is None and cors_config("http://127.0.0.1") is None:
            reason = "this daemon has no Cors configuration section (CORS support not merged)"
        if reason:
            raise unittest.SkipTest(reason)
        # the page's origin: a static web server for samples/js on another port
        self.pages = reactor.listenTCP(0, server.Site(static.File(JS_SAMPLES)),
                                       interface="127.0.0.1")
        self.addCleanup(self.pages.stopListening)
        self.origin = f"http://127.0.0.1:{self.pages.getHost().port}"

    @inlineCallbacks
    def open_page(self, daemon, **params: str):
        """The DOM of the page after it ran (Chromium's --dump-dom)."""
        query = urlencode({"server": daemon.dicomweb, "user": USER, "password": PASSWORD,
                           **params})
        profile = tempfile.mkdtemp(prefix="dwd-samples-chromium-")
        result = yield run(chromium(), [
            "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            f"--user-data-dir={profile}", "--virtual-time-budget=15000", "--dump-dom",
            f"{self.origin}/browser/index.html?{query}"])
        self.assertEqual(result.code, 0, result)
        return result.out

    @inlineCallbacks
    def test_search_list_and_rendered_preview(self):
        daemon = start_secured(self, cors=cors_config(self.origin))
        yield upload(self, daemon, [testdata("CT_small.dcm"), testdata("MR_small.dcm")])
        ct = pydicom.dcmread(testdata("CT_small.dcm"), stop_before_pixels=True)

        dom = yield self.open_page(daemon, q="CT", auto="1")
        status = re.search(r'<p id="status"[^>]*>(.*?)</p>', dom, re.S).group(1)
        self.assertEqual(
            status, f"Preview of {ct.SOPInstanceUID}: " + status.split(": ", 1)[1])
        self.assertRegex(status, r": \d+ bytes, 512x512 pixels\.$")  # decoded by the browser
        items = re.findall(r'<li data-study="([^"]+)"', dom)
        self.assertEqual(items, [str(ct.StudyInstanceUID)])
        self.assertIn("CompressedSamples^CT1", dom)
        self.assertRegex(dom, r'<img id="preview"[^>]* src="blob:' + re.escape(self.origin))

        dom = yield self.open_page(daemon, q="", auto="1")  # every study; the first previewed
        self.assertEqual(len(re.findall(r'<li data-study=', dom)), 2, dom)
        self.assertIn("Preview of", dom)

        dom = yield self.open_page(daemon, q="CT", auto="1", password="wrong")
        self.assertIn("request failed (HTTP 401)", dom)

    @inlineCallbacks
    def test_origin_not_allowed(self):
        """Without CORS for the page's origin the browser refuses the answers."""
        daemon = start_secured(self, cors=cors_config("http://127.0.0.1:1"))
        yield upload(self, daemon, [testdata("CT_small.dcm")])
        dom = yield self.open_page(daemon, q="CT", auto="1")
        self.assertIn("network error (is the server up, and does its CORS allow this origin?)",
                      dom)
        self.assertNotIn("<li data-study=", dom)
