"""STOW-RS routes against a daemon listening on a loopback port."""

from __future__ import annotations

import io
import json
import os
import random
import re
from collections.abc import Iterable
from typing import Any

import numpy as np
import pydicom
import treq
from pydicom.data import get_testdata_file
from pydicom.dataelem import RawDataElement
from pydicom.encaps import generate_frames
from pydicom.tag import Tag
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks, succeed
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase
from twisted.web.client import UNKNOWN_LENGTH, HTTPConnectionPool
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

from dwdaemon.config import parse_config
from dwdaemon.dicom.ids import resource_ids
from dwdaemon.dicom.xmlmodel import dataset_json_to_xml, xml_to_dataset_json
from dwdaemon.tap import build_daemon
from dwdaemon.threads import ThreadPools

B = "b0undary-123"
CT = "CT_small.dcm"
MR = "MR_small.dcm"
JPEG = "SC_rgb_jpeg_dcmtk.dcm"
STUDY_URL = "http://127.0.0.1/unused"


def testdata(name: str) -> bytes:
    path = get_testdata_file(name, download=False)
    assert path is not None
    with open(path, "rb") as f:
        return f.read()


def modified(name: str, **changes: Any) -> bytes:
    """A shipped file with attributes changed (``None`` deletes)."""
    ds = pydicom.dcmread(get_testdata_file(name, download=False))
    for key, value in changes.items():
        if value is None:
            if key in ds:
                delattr(ds, key)
        else:
            setattr(ds, key, value)
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


def multipart(parts: Iterable[bytes | tuple[dict[str, str], bytes]], boundary: str = B,
              preamble: bytes = b"", closing: bool = True) -> bytes:
    """A multipart/related body; plain bytes parts get ``Content-Type: application/dicom``."""
    bnd = boundary.encode()
    out = [preamble]
    for part in parts:
        headers, data = part if isinstance(part, tuple) else (
            {"Content-Type": "application/dicom"}, part)
        out.append(b"--" + bnd + b"\r\n")
        for k, v in headers.items():
            out.append(f"{k}: {v}\r\n".encode())
        out.append(b"\r\n" + data + b"\r\n")
    if closing:
        out.append(b"--" + bnd + b"--\r\n")
    return b"".join(out)


def ctype(boundary: str = B, type_: str = "application/dicom") -> str:
    return f'multipart/related; type="{type_}"; boundary={boundary}'


def instance_id(data: bytes) -> str:
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    return resource_ids(ds.get("PatientID", ""), ds.StudyInstanceUID, ds.SeriesInstanceUID,
                        ds.SOPInstanceUID).instance


@implementer(IBodyProducer)
class BytesProducer:
    """Writes a body at once (no cooperator task left behind when the server answers early);
    ``chunked`` hides the length so the client uses chunked transfer-encoding."""

    def __init__(self, body: bytes, chunked: bool = False) -> None:
        self.body = body
        self.length = UNKNOWN_LENGTH if chunked else len(body)

    def startProducing(self, consumer: Any) -> Any:
        for i in range(0, len(self.body), 1 << 16):
            consumer.write(self.body[i:i + (1 << 16)])
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class StowServerMixin:
    """Starts an in-process daemon on 127.0.0.1:<random port>."""

    config: dict[str, Any] = {}

    def setUp(self) -> None:
        tmp = os.path.abspath(self.mktemp())  # type: ignore[attr-defined]
        os.makedirs(tmp)
        cfg = {"StorageDirectory": os.path.join(tmp, "storage"),
               "IndexDirectory": os.path.join(tmp, "index"),
               "DicomWeb": {"Enable": True}}
        cfg.update(self.config)
        config, _ = parse_config(json.dumps(cfg), tmp)
        pools = ThreadPools(reactor)
        daemon = build_daemon(config, reactor, pools)
        site, store = daemon.site, daemon.store
        store.open()
        pools.start()
        self.store = store
        self.port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.base = f"http://127.0.0.1:{self.port.getHost().port}"
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(store.close)  # type: ignore[attr-defined]
        self.addCleanup(pools.stop)  # type: ignore[attr-defined]
        self.addCleanup(self.port.stopListening)  # type: ignore[attr-defined]

    @inlineCallbacks
    def stow(self, body: bytes, content_type: str | None = None, path: str = "studies",
             accept: str | None = None, chunked: bool = False,
             headers: dict[str, str] | None = None) -> Any:
        """POST a body; fires with (status, headers, body bytes)."""
        h = Headers()
        h.addRawHeader("Content-Type", content_type or ctype())
        if accept:
            h.addRawHeader("Accept", accept)
        for k, v in (headers or {}).items():
            h.addRawHeader(k, v)
        resp = yield treq.post(f"{self.base}/dicom-web/{path}", data=BytesProducer(body, chunked),
                               headers=h,
                               pool=self.pool)
        content = yield treq.content(resp)
        return resp.code, resp.headers, content

    @inlineCallbacks
    def get(self, path: str) -> Any:
        resp = yield treq.get(self.base + path, pool=self.pool)
        content = yield treq.content(resp)
        return resp.code, content

    @inlineCallbacks
    def instance_ids(self) -> Any:
        code, content = yield self.get("/instances")
        assert code == 200, content
        return sorted(json.loads(content))

    @inlineCallbacks
    def assert_stored_exactly(self, data: bytes) -> Any:
        code, content = yield self.get(f"/instances/{instance_id(data)}/file")
        self.assertEqual(code, 200)  # type: ignore[attr-defined]
        self.assertTrue(content == data, "stored file differs")  # type: ignore[attr-defined]


def referenced(doc: dict[str, Any]) -> list[str]:
    return [i["00081155"]["Value"][0] for i in doc.get("00081199", {}).get("Value", [])]


def failures(doc: dict[str, Any]) -> list[tuple[str, int]]:
    return [((i["00081155"].get("Value") or [""])[0], i["00081197"]["Value"][0])
            for i in doc.get("00081198", {}).get("Value", [])]


class RequestShapeTests(StowServerMixin, TestCase):
    @inlineCallbacks
    def check_ok(self, body: bytes, content_type: str, files: list[bytes],
                 **kw: Any) -> Any:
        code, headers, content = yield self.stow(body, content_type, **kw)
        self.assertEqual(code, 200, content)
        self.assertEqual(headers.getRawHeaders("content-type"), ["application/dicom+json"])
        doc = json.loads(content)
        uids = [str(pydicom.dcmread(io.BytesIO(f)).SOPInstanceUID) for f in files]
        self.assertEqual(referenced(doc), uids)
        self.assertNotIn("00081198", doc)
        for f in files:
            yield self.assert_stored_exactly(f)
        return doc

    @inlineCallbacks
    def test_basic_two_parts(self) -> Any:
        files = [testdata(CT), testdata(MR)]
        doc = yield self.check_ok(multipart(files), ctype(), files)
        ct = pydicom.dcmread(io.BytesIO(files[0]))
        item = doc["00081199"]["Value"][0]
        self.assertEqual(item["00081150"]["Value"], [ct.SOPClassUID])
        self.assertEqual(
            item["00081190"]["Value"],
            [f"{self.base}/dicom-web/studies/{ct.StudyInstanceUID}/series/"
             f"{ct.SeriesInstanceUID}/instances/{ct.SOPInstanceUID}"])
        # Two studies: no study-level RetrieveURL.
        self.assertNotIn("00081190", doc)

    @inlineCallbacks
    def test_retrieve_url_serves_the_stored_file(self) -> Any:
        """The study RetrieveURL answers the instance as stored, its part with a
        Content-Length (as Orthanc, whose suite counts them)."""
        files = [testdata(CT)]
        doc = yield self.check_ok(multipart(files), ctype(), files)
        url = doc["00081190"]["Value"][0]
        resp = yield treq.get(url, pool=self.pool, headers={
            "Accept": "multipart/related; type=application/dicom; transfer-syntax=*"})
        content = yield treq.content(resp)
        self.assertEqual(resp.code, 200)
        lengths = re.findall(rb"(?im)^Content-Length:\s*(\d+)", content)
        self.assertEqual([int(n) for n in lengths], [len(files[0])])

    @inlineCallbacks
    def test_content_type_variants(self) -> Any:
        files = [testdata(CT)]
        for value in [
            f"multipart/related; type=application/dicom; boundary={B}",
            f'multipart/related; boundary="{B}"; type="application/dicom"',
            f'Multipart/Related;boundary={B};type="application/dicom"',
            f"multipart/related; boundary={B}",  # no type: application/dicom
        ]:
            doc = yield self.check_ok(multipart(files), value, files)
            self.assertEqual(doc["00081190"]["Value"][0],
                             f"{self.base}/dicom-web/studies/"
                             f"{pydicom.dcmread(io.BytesIO(files[0])).StudyInstanceUID}")

    @inlineCallbacks
    def test_preamble_and_leading_crlf(self) -> Any:
        files = [testdata(MR)]
        yield self.check_ok(multipart(files, preamble=b"\r\n"), ctype(), files)
        yield self.check_ok(multipart(files, preamble=b"a preamble\r\n"), ctype(), files)

    @inlineCallbacks
    def test_part_headers(self) -> Any:
        ct, mr, jpeg = testdata(CT), testdata(MR), testdata(JPEG)
        parts = [
            ({"content-type": "application/dicom; transfer-syntax=1.2.840.10008.1.2.1",
              "Content-Length": str(len(ct))}, ct),
            ({"CONTENT-TYPE": 'application/dicom; transfer-syntax="1.2.840.10008.1.2.4.50"'},
             jpeg),
            ({}, mr),  # no Content-Type: the body's type applies
        ]
        yield self.check_ok(multipart(parts), ctype(), [ct, jpeg, mr])

    @inlineCallbacks
    def test_chunked(self) -> Any:
        files = [testdata(CT), testdata(MR), testdata(JPEG)]
        yield self.check_ok(multipart(files), ctype(), files, chunked=True)

    @inlineCallbacks
    def test_large_body_spooled(self) -> Any:
        """Many parts in a body well over Twisted's in-memory limit, chunked."""
        src = pydicom.dcmread(get_testdata_file(CT, download=False))
        files = []
        for i in range(40):
            src.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.{i + 1}"
            buf = io.BytesIO()
            src.save_as(buf)
            files.append(buf.getvalue())
        yield self.check_ok(multipart(files), ctype(), files, chunked=True)
        ids = yield self.instance_ids()
        self.assertEqual(len(ids), 40)

    @inlineCallbacks
    def test_study_in_url(self) -> Any:
        ct = testdata(CT)
        study = pydicom.dcmread(io.BytesIO(ct)).StudyInstanceUID
        code, _, content = yield self.stow(multipart([ct]), path=f"studies/{study}")
        self.assertEqual(code, 200)
        doc = json.loads(content)
        self.assertEqual(doc["00081190"]["Value"], [f"{self.base}/dicom-web/studies/{study}"])

    @inlineCallbacks
    def test_accept(self) -> Any:
        ct = testdata(CT)
        code, headers, content = yield self.stow(multipart([ct]), accept="application/dicom+xml")
        self.assertEqual(code, 200)
        self.assertEqual(headers.getRawHeaders("content-type"), ["application/dicom+xml"])
        doc = xml_to_dataset_json(content)
        self.assertEqual(referenced(doc), [pydicom.dcmread(io.BytesIO(ct)).SOPInstanceUID])
        code, headers, content = yield self.stow(multipart([ct]), accept="application/json")
        self.assertEqual(headers.getRawHeaders("content-type"), ["application/dicom+json"])
        code, _, _ = yield self.stow(
            multipart([ct]), accept="text/html;q=0.5, application/dicom+xml;q=0.9")
        self.assertEqual(code, 200)
        code, _, content = yield self.stow(multipart([ct]), accept="image/png")
        self.assertEqual(code, 406)

    @inlineCallbacks
    def test_forwarded_headers_in_urls(self) -> Any:
        ct = testdata(CT)
        code, _, content = yield self.stow(
            multipart([ct]), headers={"X-Forwarded-Host": "pacs.example.org",
                                      "X-Forwarded-Proto": "https"})
        doc = json.loads(content)
        self.assertTrue(doc["00081190"]["Value"][0].startswith(
            "https://pacs.example.org/dicom-web/studies/"))
        code, _, content = yield self.stow(
            multipart([ct]), headers={"Forwarded": 'for=1.2.3.4;host="h.example";proto=https'})
        doc = json.loads(content)
        self.assertTrue(doc["00081199"]["Value"][0]["00081190"]["Value"][0].startswith(
            "https://h.example/dicom-web/studies/"))

    @inlineCallbacks
    def test_warning_when_coerced(self) -> Any:
        """A value that cannot be represented is left empty in the metadata: 202 + warning."""
        ds = pydicom.dcmread(get_testdata_file(CT, download=False))
        tag = Tag(0x00180050)  # SliceThickness (DS) = "abc"
        ds._dict[tag] = RawDataElement(tag, "DS", 4, b"abc ", 0, False, True)  # noqa: SLF001 - pydicom: plant a raw element
        buf = io.BytesIO()
        ds.save_as(buf)
        data = buf.getvalue()
        code, _, content = yield self.stow(multipart([data, testdata(MR)]))
        self.assertEqual(code, 202, content)
        items = json.loads(content)["00081199"]["Value"]
        self.assertEqual(items[0]["00081196"], {"vr": "US", "Value": [0xB000]})
        self.assertNotIn("00081196", items[1])
        yield self.assert_stored_exactly(data)

    @inlineCallbacks
    def test_resend_is_not_an_error(self) -> Any:
        ct = testdata(CT)
        for _ in range(2):
            code, _, content = yield self.stow(multipart([ct]))
            self.assertEqual(code, 200, content)
        ids = yield self.instance_ids()
        self.assertEqual(len(ids), 1)
        yield self.assert_stored_exactly(ct)


class OptionsTests(StowServerMixin, TestCase):
    config = {"DicomWeb": {"Enable": True, "Host": "pacs.example.org:8443", "Ssl": True}}

    @inlineCallbacks
    def test_host_and_ssl_options_win(self) -> Any:
        ct = testdata(CT)
        code, _, content = yield self.stow(
            multipart([ct]), headers={"X-Forwarded-Host": "other.example", "Host": "x"})
        doc = json.loads(content)
        study = pydicom.dcmread(io.BytesIO(ct)).StudyInstanceUID
        self.assertEqual(doc["00081190"]["Value"],
                         [f"https://pacs.example.org:8443/dicom-web/studies/{study}"])
        self.assertTrue(doc["00081199"]["Value"][0]["00081190"]["Value"][0].startswith(
            f"https://pacs.example.org:8443/dicom-web/studies/{study}/series/"))


class BadBodyTests(StowServerMixin, TestCase):
    @inlineCallbacks
    def assert_nothing_stored(self) -> Any:
        ids = yield self.instance_ids()
        self.assertEqual(ids, [])

    @inlineCallbacks
    def expect(self, status: int, body: bytes, content_type: str | None = None,
               **kw: Any) -> Any:
        code, headers, content = yield self.stow(body, content_type, **kw)
        self.assertEqual(code, status, content)
        return headers, content

    @inlineCallbacks
    def test_random_bytes(self) -> Any:
        yield self.expect(400, random.Random(1).randbytes(300_000))
        yield self.expect(400, random.Random(2).randbytes(1000))
        yield self.assert_nothing_stored()

    @inlineCallbacks
    def test_empty_body(self) -> Any:
        _, content = yield self.expect(400, b"")
        self.assertIn(b"empty", content)

    @inlineCallbacks
    def test_truncated(self) -> Any:
        body = multipart([testdata(CT), testdata(MR)])
        for cut in (len(body) // 3, len(body) - 30, len(body) - 5):
            yield self.expect(400, body[:cut])
        yield self.expect(400, body[: len(body) - 30], chunked=True)
        yield self.assert_nothing_stored()

    @inlineCallbacks
    def test_missing_closing_boundary(self) -> Any:
        _, content = yield self.expect(400, multipart([testdata(CT)], closing=False))
        self.assertIn(b"closing boundary", content)
        yield self.assert_nothing_stored()

    @inlineCallbacks
    def test_no_parts(self) -> Any:
        _, content = yield self.expect(400, f"--{B}--\r\n".encode())
        self.assertIn(b"no part", content)
        yield self.expect(400, f"preamble only, no boundary at all {B}".encode())

    @inlineCallbacks
    def test_no_boundary_parameter(self) -> Any:
        yield self.expect(400, multipart([testdata(CT)]),
                          'multipart/related; type="application/dicom"')

    @inlineCallbacks
    def test_unsupported_media_types(self) -> Any:
        body = multipart([testdata(CT)])
        yield self.expect(415, body, "application/dicom")
        yield self.expect(415, body, "text/plain")
        yield self.expect(415, body, ctype(type_="application/pdf"))
        yield self.assert_nothing_stored()

    @inlineCallbacks
    def test_non_dicom_part(self) -> Any:
        # Bad syntax only: 400; no FailedSOPSequence item without its UIDs (Orthanc too)
        _, content = yield self.expect(400, multipart([b"this is not DICOM at all"]))
        doc = json.loads(content)
        self.assertEqual(failures(doc), [])
        self.assertNotIn("00081198", doc)
        self.assertEqual(doc["00081199"], {"vr": "SQ"})
        self.assertEqual(doc["00080005"], {"vr": "CS", "Value": ["ISO_IR 192"]})
        self.assertNotIn("00081190", doc)
        yield self.assert_nothing_stored()

    @inlineCallbacks
    def test_part_without_uids(self) -> Any:
        no_study = modified(CT, StudyInstanceUID=None)
        sop = pydicom.dcmread(io.BytesIO(no_study)).SOPInstanceUID
        _, content = yield self.expect(400, multipart([no_study]))
        self.assertEqual(failures(json.loads(content)), [(sop, 0xC000)])
        no_sop = modified(MR, SOPInstanceUID=None)
        _, content = yield self.expect(400, multipart([no_sop]))
        self.assertEqual(failures(json.loads(content)), [])
        yield self.assert_nothing_stored()

    @inlineCallbacks
    def test_other_part_types_in_a_dicom_body(self) -> Any:
        ct = testdata(CT)
        _, content = yield self.expect(202, multipart([
            ({"Content-Type": "application/octet-stream"}, ct),
            ({"Content-Type": "text/plain"}, b"hello"),
        ]))
        doc = json.loads(content)
        self.assertEqual(referenced(doc), [pydicom.dcmread(io.BytesIO(ct)).SOPInstanceUID])
        self.assertEqual(failures(doc), [])  # the text part has no UIDs to report
        yield self.assert_stored_exactly(ct)

    @inlineCallbacks
    def test_good_beside_bad(self) -> Any:
        good = testdata(MR)
        headers, content = yield self.expect(
            202, multipart([b"garbage", good, random.Random(3).randbytes(5000)]))
        doc = json.loads(content)
        self.assertEqual(referenced(doc), [pydicom.dcmread(io.BytesIO(good)).SOPInstanceUID])
        self.assertEqual(failures(doc), [])  # garbage parts have no UIDs to report
        ids = yield self.instance_ids()
        self.assertEqual(ids, [instance_id(good)])
        yield self.assert_stored_exactly(good)

    @inlineCallbacks
    def test_study_mismatch(self) -> Any:
        ct, mr = testdata(CT), testdata(MR)
        ct_study = pydicom.dcmread(io.BytesIO(ct)).StudyInstanceUID
        # Every instance belongs to another study: 409, nothing stored.
        _, content = yield self.expect(409, multipart([mr]), path=f"studies/{ct_study}")
        doc = json.loads(content)
        mr_sop = pydicom.dcmread(io.BytesIO(mr)).SOPInstanceUID
        self.assertEqual(failures(doc), [(mr_sop, 0x0110)])
        self.assertNotIn("00081190", doc)  # nothing stored: no study to retrieve
        yield self.assert_nothing_stored()
        # One matches, one does not: 202, only the matching one stored.
        _, content = yield self.expect(202, multipart([ct, mr]), path=f"studies/{ct_study}")
        ids = yield self.instance_ids()
        self.assertEqual(ids, [instance_id(ct)])

    @inlineCallbacks
    def test_study_mismatch_beyond_the_first_bytes(self) -> Any:
        """The StudyInstanceUID comes after 100 KB of other data: the full parse refuses it."""
        ct_study = pydicom.dcmread(io.BytesIO(testdata(CT))).StudyInstanceUID
        ds = pydicom.dcmread(io.BytesIO(testdata(MR)))
        ds.add_new(0x00190010, "LO", "DWTEST")
        ds.add_new(0x00191000, "OB", os.urandom(100_000))
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        _, content = yield self.expect(409, multipart([buf.getvalue()]),
                                       path=f"studies/{ct_study}")
        self.assertEqual(failures(json.loads(content)), [(ds.SOPInstanceUID, 0x0110)])
        yield self.assert_nothing_stored()

    @inlineCallbacks
    def test_truncated_dicom_part(self) -> Any:
        ct = testdata(CT)
        _, content = yield self.expect(400, multipart([ct[: len(ct) - 1000]]))
        self.assertEqual([r for _, r in failures(json.loads(content))], [0xC000])
        yield self.assert_nothing_stored()


class LimitTests(StowServerMixin, TestCase):
    config = {"MaximumUploadSize": 1}

    @inlineCallbacks
    def test_413(self) -> Any:
        small = multipart([testdata(CT)])
        code, _, _ = yield self.stow(small)
        self.assertEqual(code, 200)
        big = multipart([os.urandom(2 << 20)])
        code, _, content = yield self.stow(big)
        self.assertEqual(code, 413)
        self.assertIn(b"MaximumUploadSize", content)
        code, _, content = yield self.stow(big, chunked=True)
        self.assertEqual(code, 413)
        # The server closes refused connections once the client is done with them.
        yield deferLater(reactor, 0.3, lambda: None)
        ids = yield self.instance_ids()
        self.assertEqual(len(ids), 1)


class OverwriteTests(StowServerMixin, TestCase):
    overwrite = False

    @property
    def config(self) -> dict[str, Any]:  # type: ignore[override]
        return {"OverwriteInstances": self.overwrite}

    @inlineCallbacks
    def test_different_content_same_uid(self) -> Any:
        first = testdata(CT)
        second = modified(CT, PatientName="CHANGED^NAME")
        code, _, _ = yield self.stow(multipart([first]))
        self.assertEqual(code, 200)
        code, _, content = yield self.stow(multipart([second]))
        self.assertEqual(code, 200, content)
        code, content = yield self.get(f"/instances/{instance_id(first)}/file")
        self.assertEqual(content, second if self.overwrite else first)


class OverwriteTrueTests(OverwriteTests):
    overwrite = True


class MetadataBulkTests(StowServerMixin, TestCase):
    """The metadata + bulk data form (PS3.18 10.5.1.2)."""

    def split(self, name: str, frames_as_parts: bool = False
              ) -> tuple[dict[str, Any], list[tuple[dict[str, str], bytes]]]:
        ds = pydicom.dcmread(get_testdata_file(name, download=False))
        parts: list[tuple[dict[str, str], bytes]] = []
        if frames_as_parts:
            nframes = int(getattr(ds, "NumberOfFrames", 1) or 1)
            frames = list(generate_frames(ds.PixelData, number_of_frames=nframes))
            del ds.PixelData
            ts = str(ds.file_meta.TransferSyntaxUID)
            for fr in frames:
                parts.append(({"Content-Type": f"image/jpeg; transfer-syntax={ts}",
                               "Content-Location": f"http://x/{ds.SOPInstanceUID}/pixels"}, fr))

        def handler(elem: pydicom.DataElement) -> str:
            uri = f"http://x/{ds.SOPInstanceUID}/{elem.tag:08X}"
            parts.append(({"Content-Type": "application/octet-stream",
                           "Content-Location": uri}, elem.value))
            return uri

        js = ds.to_json_dict(bulk_data_threshold=64, bulk_data_element_handler=handler)
        if frames_as_parts:
            js["7FE00010"] = {"vr": "OB",
                              "BulkDataURI": f"http://x/{ds.SOPInstanceUID}/pixels"}
        return js, parts

    @inlineCallbacks
    def fetch(self, name: str) -> Any:
        src = pydicom.dcmread(get_testdata_file(name, download=False))
        code, content = yield self.get(
            "/instances/" + resource_ids(src.get("PatientID", ""), src.StudyInstanceUID,
                                         src.SeriesInstanceUID, src.SOPInstanceUID).instance
            + "/file")
        self.assertEqual(code, 200)
        back = pydicom.dcmread(io.BytesIO(content))
        return src, back

    @inlineCallbacks
    def test_json_native_and_compressed(self) -> Any:
        ct_js, ct_parts = self.split(CT)
        jp_js, jp_parts = self.split(JPEG, frames_as_parts=True)
        body = multipart([({"Content-Type": "application/dicom+json"},
                           json.dumps([ct_js, jp_js]).encode()), *ct_parts, *jp_parts])
        code, _, content = yield self.stow(body, ctype(type_="application/dicom+json"))
        self.assertEqual(code, 200, content)
        self.assertEqual(len(referenced(json.loads(content))), 2)
        src, back = yield self.fetch(CT)
        self.assertEqual(back.file_meta.TransferSyntaxUID, pydicom.uid.ExplicitVRLittleEndian)
        self.assertEqual(back.PatientName, src.PatientName)
        np.testing.assert_array_equal(back.pixel_array, src.pixel_array)
        src, back = yield self.fetch(JPEG)
        self.assertEqual(back.file_meta.TransferSyntaxUID, src.file_meta.TransferSyntaxUID)
        np.testing.assert_array_equal(back.pixel_array, src.pixel_array)

    @inlineCallbacks
    def test_xml_metadata(self) -> Any:
        js, parts = self.split(MR)
        body = multipart([({"Content-Type": "application/dicom+xml"}, dataset_json_to_xml(js)),
                          *parts])
        code, _, content = yield self.stow(body, ctype(type_="application/dicom+xml"),
                                           accept="application/dicom+xml")
        self.assertEqual(code, 200, content)
        src, back = yield self.fetch(MR)
        np.testing.assert_array_equal(back.pixel_array, src.pixel_array)

    @inlineCallbacks
    def test_missing_bulk_part(self) -> Any:
        ct_js, _ = self.split(CT)
        mr_js, mr_parts = self.split(MR)
        body = multipart([({"Content-Type": "application/dicom+json"},
                           json.dumps([ct_js, mr_js]).encode()), *mr_parts])
        code, _, content = yield self.stow(body, ctype(type_="application/dicom+json"))
        self.assertEqual(code, 202, content)
        doc = json.loads(content)
        ct_sop = ct_js["00080018"]["Value"][0]
        self.assertEqual(failures(doc), [(ct_sop, 0xC000)])
        self.assertEqual(referenced(doc), [mr_js["00080018"]["Value"][0]])

    @inlineCallbacks
    def test_bad_metadata(self) -> Any:
        body = multipart([({"Content-Type": "application/dicom+json"}, b"{not json")])
        code, _, content = yield self.stow(body, ctype(type_="application/dicom+json"))
        self.assertEqual(code, 400, content)
        ids = yield self.instance_ids()
        self.assertEqual(ids, [])


class DicomwebClientTests(StowServerMixin, TestCase):
    """Round trip with the real ``dicomweb-client`` package."""

    @inlineCallbacks
    def test_store_instances(self) -> Any:
        from dicomweb_client.api import DICOMwebClient

        datasets = [pydicom.dcmread(get_testdata_file(n, download=False))
                    for n in (CT, MR, JPEG)]
        url = f"{self.base}/dicom-web"

        def store() -> Any:
            client = DICOMwebClient(url=url)
            try:
                return client.store_instances(datasets=datasets)
            finally:
                client._session.close()  # noqa: SLF001 - dicomweb-client has no public close

        result = yield deferToThread(store)
        stored = [str(i.ReferencedSOPInstanceUID) for i in result.ReferencedSOPSequence]
        self.assertEqual(sorted(stored), sorted(str(d.SOPInstanceUID) for d in datasets))
        self.assertNotIn("FailedSOPSequence", result)
        ids = yield self.instance_ids()
        self.assertEqual(len(ids), 3)
        # What the client sent (its own encoding of the datasets) is what is stored.
        for ds in datasets:
            code, content = yield self.get(
                "/instances/" + resource_ids(ds.get("PatientID", ""), ds.StudyInstanceUID,
                                             ds.SeriesInstanceUID, ds.SOPInstanceUID).instance
                + "/file")
            self.assertEqual(code, 200)
            back = pydicom.dcmread(io.BytesIO(content))
            self.assertEqual(back.SOPInstanceUID, ds.SOPInstanceUID)
            self.assertEqual(back.PixelData, ds.PixelData)

        def store_study() -> Any:
            client = DICOMwebClient(url=url)
            try:
                return client.store_instances(datasets=[datasets[0], datasets[1]],
                                              study_instance_uid=datasets[0].StudyInstanceUID)
            finally:
                client._session.close()  # noqa: SLF001 - dicomweb-client has no public close

        # dicomweb-client raises on a non-200/202 answer; here one of two matches: 202.
        result = yield deferToThread(store_study)
        self.assertEqual(len(result.FailedSOPSequence), 1)
        self.assertEqual(result.FailedSOPSequence[0].FailureReason, 0x0110)
        # Let the server see the client's connections close.
        yield deferLater(reactor, 0.2, lambda: None)
