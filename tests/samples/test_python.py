"""The Python samples (samples/python), each run as a subprocess against a real daemon."""

from __future__ import annotations

import os
from typing import Any

import numpy
import pydicom
from twisted.internet.defer import inlineCallbacks
from twisted.trial import unittest
from twisted.web import resource

from dwdaemon.config import DicomWebConfig, RemoteServer
from tests.support import testdata

from .support import (
    PASSWORD,
    USER,
    auth_args,
    auth_env,
    basic,
    make_study,
    qido,
    run_python,
    start_secured,
    start_twistd,
    upload,
)

FILES = ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm"]


def header(name: str) -> pydicom.Dataset:
    return pydicom.dcmread(testdata(name), stop_before_pixels=True)


class DicomwebClientSamples(unittest.TestCase):
    """search_studies.py, retrieve_series.py and store_folder.py (PyPI dicomweb-client)."""

    timeout = 120

    @inlineCallbacks
    def test_store_folder_stores_every_file_and_skips_the_rest(self):
        daemon = start_secured(self)
        folder = self.mktemp()
        os.makedirs(os.path.join(folder, "sub"))
        for i, name in enumerate(FILES):
            target = os.path.join(folder, "sub" if i == 2 else "", name)
            with open(testdata(name), "rb") as src, open(target, "wb") as dst:
                dst.write(src.read())
        with open(os.path.join(folder, "README.txt"), "w") as fp:
            fp.write("not DICOM")

        result = yield run_python("store_folder.py", [folder, "--batch", "2",
                                                      *auth_args(daemon)])
        self.assertEqual(result.code, 0, result)
        self.assertIn("README.txt", result.out)
        self.assertEqual(result.out.count("storing "), 2, result)  # 2 + 1 instances
        self.assertIn("3 stored, 0 refused", result.out)
        for name in FILES:
            self.assertIn(f"stored {header(name).SOPInstanceUID}", result.out)
        studies = yield qido(self, daemon, "/studies")
        self.assertEqual({s["0020000D"]["Value"][0] for s in studies},
                         {str(header(name).StudyInstanceUID) for name in FILES})

    @inlineCallbacks
    def test_search_studies_pages_and_filters(self):
        daemon = start_secured(self)
        yield upload(self, daemon, [testdata(name) for name in FILES])

        # URL and credentials from the environment this time
        result = yield run_python("search_studies.py", ["--page-size", "2"],
                                  env=auth_env(daemon))
        self.assertEqual(result.code, 0, result)
        self.assertIn("page 1: 2 studies", result.out)
        self.assertIn("page 2: 1 studies", result.out)
        self.assertIn("found 3 studies", result.out)
        for name in FILES:
            self.assertIn(str(header(name).StudyInstanceUID), result.out)

        mr = header("MR_small.dcm")
        result = yield run_python("search_studies.py", [
            "--filter", "PatientName=*MR*", "--filter", f"StudyDate={mr.StudyDate}-",
            *auth_args(daemon)])
        self.assertEqual(result.code, 0, result)
        self.assertIn("found 1 studies", result.out)
        self.assertIn(str(mr.StudyInstanceUID), result.out)
        self.assertIn("MR", result.out)

        # fuzzy matching: each word starts a word of the name, case and accents folded
        result = yield run_python("search_studies.py", [
            "--filter", "PatientName=mr1 compressed", "--fuzzy", *auth_args(daemon)])
        self.assertEqual(result.code, 0, result)
        self.assertIn("found 1 studies", result.out)
        self.assertIn(str(mr.StudyInstanceUID), result.out)

        result = yield run_python("search_studies.py", ["--filter", "PatientName",
                                                        *auth_args(daemon)])
        self.assertEqual(result.code, 2, result)  # argparse: usage error
        self.assertIn("expected KEYWORD=VALUE", result.err)

    @inlineCallbacks
    def test_retrieve_series_writes_the_frame(self):
        daemon = start_secured(self)
        yield upload(self, daemon, [testdata("CT_small.dcm")])
        ct = pydicom.dcmread(testdata("CT_small.dcm"))
        out = self.mktemp()

        result = yield run_python("retrieve_series.py", [
            str(ct.StudyInstanceUID), str(ct.SeriesInstanceUID), "--out", out,
            *auth_args(daemon)])
        self.assertEqual(result.code, 0, result)
        self.assertIn("1 instances", result.out)
        self.assertIn(f"{ct.SOPInstanceUID}  class {ct.SOPClassUID}  128x128", result.out)
        self.assertIn(f"frame 1: {128 * 128 * 2} bytes written", result.out)
        with open(out, "rb") as fp:
            frame = numpy.frombuffer(fp.read(), dtype="<i2").reshape(128, 128)
        numpy.testing.assert_array_equal(frame, ct.pixel_array)

        jpeg = self.mktemp()
        result = yield run_python("retrieve_series.py", [
            str(ct.StudyInstanceUID), str(ct.SeriesInstanceUID), "--out", jpeg,
            "--media-type", "image/jpeg", *auth_args(daemon)])
        self.assertEqual(result.code, 0, result)
        with open(jpeg, "rb") as fp:
            self.assertEqual(fp.read(2), b"\xff\xd8")


class RequestsSamples(unittest.TestCase):
    """stow_by_hand.py and wado_stream.py (plain requests)."""

    timeout = 120

    @inlineCallbacks
    def test_stow_by_hand(self):
        daemon = start_secured(self)
        names = ["CT_small.dcm", "rtplan.dcm"]
        result = yield run_python("stow_by_hand.py", [testdata(n) for n in names],
                                  env=auth_env(daemon))
        self.assertEqual(result.code, 0, result)
        self.assertIn("HTTP 200", result.out)
        self.assertIn("2 stored, 0 refused", result.out)
        for name in names:
            uid = header(name).SOPInstanceUID
            self.assertIn(f"stored  {uid}", result.out)
            found = yield qido(self, daemon, f"/instances?SOPInstanceUID={uid}")
            self.assertEqual(len(found), 1)

        # a part that is not DICOM is refused: 202, exit 1
        junk = self.mktemp()
        with open(junk, "wb") as fp:
            fp.write(b"not DICOM at all")
        result = yield run_python("stow_by_hand.py", [testdata("MR_small.dcm"), junk],
                                  env=auth_env(daemon))
        self.assertEqual(result.code, 1, result)
        self.assertIn("HTTP 202", result.out)
        self.assertIn("1 stored, 1 refused", result.out)
        self.assertIn("refused 1 part(s) that are not readable DICOM instances", result.out)

    @inlineCallbacks
    def test_wado_stream_writes_each_part(self):
        daemon = start_secured(self)
        study, paths = make_study(self.mktemp(), 3)
        yield upload(self, daemon, paths + [testdata("MR_small.dcm")])
        out = self.mktemp()

        result = yield run_python("wado_stream.py", [study, "--out", out, *auth_args(daemon)])
        self.assertEqual(result.code, 0, result)
        self.assertIn("3 parts", result.out)
        self.assertEqual(result.out.count("application/dicom; transfer-syntax="), 3, result)
        received = {}
        for name in sorted(os.listdir(out)):
            ds = pydicom.dcmread(os.path.join(out, name))
            received[ds.SOPInstanceUID] = ds
        self.assertEqual(len(received), 3)
        for path in paths:
            original = pydicom.dcmread(path)
            ds = received[original.SOPInstanceUID]
            self.assertEqual(ds.StudyInstanceUID, study)
            numpy.testing.assert_array_equal(ds.pixel_array, original.pixel_array)

        # one series only
        series = pydicom.dcmread(paths[0]).SeriesInstanceUID
        result = yield run_python("wado_stream.py", [study, series, "--out", self.mktemp(),
                                                     *auth_args(daemon)])
        self.assertEqual(result.code, 0, result)
        self.assertIn("2 parts", result.out)  # instances 0 and 2 are in the first series

        result = yield run_python("wado_stream.py", ["1.2.3.4", *auth_args(daemon)])
        self.assertEqual(result.code, 1, result)
        self.assertIn("HTTP 404", result.out)


class InFlight(resource.Resource):
    """Wraps a site's root resource; records the most WADO-RS requests served at once."""

    isLeaf = True

    def __init__(self, inner: Any) -> None:
        super().__init__()
        self.inner = inner
        self.now = self.most = 0

    def render(self, request: Any) -> Any:
        if b"/instances/" in request.path:
            self.now += 1
            self.most = max(self.most, self.now)

            def done(_: Any) -> None:
                self.now -= 1

            request.notifyFinish().addBoth(done)
        return self.inner.render(request)


class TreqSample(unittest.TestCase):
    """bulk_download.py (treq on Twisted)."""

    timeout = 120

    @inlineCallbacks
    def test_bulk_download_of_a_study(self):
        daemon = start_secured(self)
        daemon.site.resource = in_flight = InFlight(daemon.site.resource)
        study, paths = make_study(self.mktemp(), 5)
        yield upload(self, daemon, paths)
        out = self.mktemp()

        result = yield run_python("bulk_download.py", [study, "--out", out, "--parallel", "2",
                                                       *auth_args(daemon)])
        self.assertEqual(result.code, 0, result)
        self.assertIn("5 instances to download, 2 at a time", result.out)
        for i in range(1, 6):
            self.assertIn(f"[{i}/5] ", result.out)
        self.assertIn("downloaded 5 instances", result.out)
        self.assertIn("0 failed", result.out)
        self.assertIn(in_flight.most, (1, 2))  # never more than --parallel at once
        for path in paths:
            original = pydicom.dcmread(path)
            copy = os.path.join(out, original.SeriesInstanceUID,
                                f"{original.SOPInstanceUID}.dcm")
            ds = pydicom.dcmread(copy)
            self.assertEqual(ds.SOPInstanceUID, original.SOPInstanceUID)
            numpy.testing.assert_array_equal(ds.pixel_array, original.pixel_array)

        result = yield run_python("bulk_download.py", [study, "--out", self.mktemp(),
                                                       "--url", daemon.dicomweb])
        self.assertEqual(result.code, 1, result)  # no credentials: 401


class ClientRoutesSample(unittest.TestCase):
    """client_routes.py: the daemon's /servers, .../stow as a job, .../get."""

    timeout = 120

    @inlineCallbacks
    def test_stow_a_study_to_a_remote_and_follow_the_job(self):
        remote = start_secured(self, "remote", users={"bob": "pw2"})
        dw = DicomWebConfig(servers={"pacs": RemoteServer(
            name="pacs", url=remote.dicomweb + "/", username="bob", password="pw2")},
            stow_max_instances=2)
        daemon = start_secured(self, dicomweb=dw)
        study, paths = make_study(self.mktemp(), 3)
        yield upload(self, daemon, paths + [testdata("MR_small.dcm")])

        result = yield run_python("client_routes.py", auth_args(daemon))
        self.assertEqual(result.code, 0, result)
        self.assertIn("1 remote servers", result.out)
        self.assertIn(f"pacs: {remote.dicomweb}/", result.out)

        result = yield run_python("client_routes.py", ["--server", "pacs", "--study", study,
                                                       *auth_args(daemon)])
        self.assertEqual(result.code, 0, result)
        self.assertIn("job Success, 100%", result.out)
        self.assertIn("sent 3 instances in 2 requests: 3 stored, 0 failed", result.out)
        self.assertIn("remote pacs has the study: yes", result.out)
        # the effect: the remote has the study's three instances, and only them
        found = yield qido(self, remote, f"/studies/{study}/instances",
                           headers=basic("bob", "pw2"))
        self.assertEqual(len(found), 3)
        studies = yield qido(self, remote, "/studies", headers=basic("bob", "pw2"))
        self.assertEqual(len(studies), 1)

        result = yield run_python("client_routes.py", ["--server", "nope", "--study", study,
                                                       *auth_args(daemon)])
        self.assertEqual(result.code, 1, result)
        self.assertIn("404", result.err)


class FailureExits(unittest.TestCase):
    """Every Python sample exits non-zero, with a message and no traceback, on a refusal."""

    timeout = 120

    @inlineCallbacks
    def test_wrong_password(self):
        daemon = start_secured(self)
        study, paths = make_study(self.mktemp(), 1)
        yield upload(self, daemon, paths)
        bad = ["--url", daemon.dicomweb, "--user", USER, "--password", "wrong"]
        ds = pydicom.dcmread(paths[0], stop_before_pixels=True)
        runs = {
            "search_studies.py": [],
            "retrieve_series.py": [study, str(ds.SeriesInstanceUID), "--out", self.mktemp()],
            "store_folder.py": [os.path.dirname(paths[0])],
            "stow_by_hand.py": paths,
            "wado_stream.py": [study, "--out", self.mktemp()],
            "bulk_download.py": [study, "--out", self.mktemp()],
            "client_routes.py": [],
        }
        for name, args in runs.items():
            result = yield run_python(name, [*args, *bad])
            self.assertEqual(result.code, 1, f"{name}: {result}")
            self.assertIn("401", result.out + result.err, f"{name}: {result}")
            self.assertNotIn("Traceback", result.err, f"{name}: {result}")


class ReadmeRunCommand(unittest.TestCase):
    """The samples against the daemon run as the README says (twistd, a configuration file)."""

    timeout = 120

    @inlineCallbacks
    def test_store_then_search_then_stream(self):
        daemon = yield start_twistd(self, {"AuthenticationEnabled": True,
                                           "RegisteredUsers": {USER: PASSWORD}})
        args = ["--url", daemon.dicomweb, "--user", USER, "--password", PASSWORD]
        result = yield run_python("stow_by_hand.py", [testdata(n) for n in FILES] + args)
        self.assertEqual(result.code, 0, result)
        self.assertIn("3 stored, 0 refused", result.out)
        result = yield run_python("search_studies.py", ["--filter", "PatientName=*CT*", *args])
        self.assertEqual(result.code, 0, result)
        self.assertIn("found 1 studies", result.out)
        ct = header("CT_small.dcm")
        result = yield run_python("wado_stream.py", [str(ct.StudyInstanceUID), "--out",
                                                     self.mktemp(), *args])
        self.assertEqual(result.code, 0, result)
        self.assertIn("1 parts", result.out)
