"""QIDO-RS over HTTP against a daemon on a loopback port."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any
from urllib.parse import quote

import pydicom
import pydicom.data
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from dwdaemon.dicom.xmlmodel import xml_to_dataset_json
from tests.qido.data import (
    SERIES_A1,
    SERIES_B1,
    STUDY_A,
    STUDY_B,
    STUDY_C,
    corpus,
)
from tests.support import read, start_daemon

CHARSET_DIR = os.path.join(os.path.dirname(pydicom.data.__file__), "charset_files")


def uids(answers: list[dict[str, Any]], tag: str = "0020000D") -> list[str]:
    return [a[tag]["Value"][0] for a in answers]


class QidoCase(TestCase):
    """A daemon loaded with the small corpus of tests.qido.data."""

    overrides: dict[str, Any] = {}
    dicomweb_overrides: dict[str, Any] = {}

    @inlineCallbacks
    def setUp(self) -> Any:
        overrides = dict(self.overrides)
        if self.dicomweb_overrides:
            from tests.support import make_config
            base = make_config(self.mktemp()).dicomweb
            overrides["dicomweb"] = dataclasses.replace(base, **self.dicomweb_overrides)
        self.daemon = start_daemon(self, **overrides)
        for data in corpus():
            yield self.daemon.store.ingest_bytes(data)

    @inlineCallbacks
    def get(self, path: str, **headers: str) -> Any:
        """(response, parsed JSON or None, raw body) of GET {root}{path}."""
        hdrs = {k.replace("_", "-"): [v] for k, v in headers.items()}
        response, body = yield self.daemon.request(
            "GET", self.daemon.config.dicomweb.root.rstrip("/") + path, headers=hdrs)
        parsed = None
        ctype = (response.headers.getRawHeaders("content-type") or [""])[0]
        if body and ctype.startswith(("application/dicom+json", "application/json")):
            parsed = json.loads(body)
        return response, parsed, body

    @inlineCallbacks
    def find(self, path: str, tag: str = "0020000D") -> Any:
        response, parsed, _ = yield self.get(path)
        if response.code == 204:
            return []
        self.assertEqual(response.code, 200, path)
        return uids(parsed, tag)


class StudyTests(QidoCase):
    @inlineCallbacks
    def test_all_studies_and_default_attributes(self) -> Any:
        response, answers, _ = yield self.get("/studies")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("content-type"),
                         ["application/dicom+json"])
        self.assertEqual(uids(answers), [STUDY_A, STUDY_B, STUDY_C])
        a = answers[0]
        self.assertEqual(a["00080005"], {"vr": "CS", "Value": ["ISO_IR 192"]})
        self.assertEqual(a["00100010"], {"vr": "PN", "Value": [{"Alphabetic": "Müller^José"}]})
        self.assertEqual(a["00080061"]["Value"], ["MR", "SR"])
        self.assertEqual(len(a["00080062"]["Value"]), 2)
        self.assertEqual(a["00201206"], {"vr": "IS", "Value": [2]})
        self.assertEqual(a["00201208"], {"vr": "IS", "Value": [4]})
        self.assertEqual(a["00080056"]["Value"], ["ONLINE"])
        self.assertEqual(a["00081190"]["Value"],
                         [f"{self.daemon.dicomweb}/studies/{STUDY_A}"])
        for tag in ("00080020", "00080030", "00080050", "00080090", "00100020", "00100030",
                    "00100040", "00200010"):
            self.assertIn(tag, a)
        self.assertNotIn("00101000", a)  # not asked
        self.assertNotIn("00080060", a)  # series level
        b = answers[1]
        self.assertEqual(b["00100010"]["Value"][0], {
            "Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"})

    @inlineCallbacks
    def test_application_json_is_served(self) -> Any:
        response, answers, _ = yield self.get("/studies", accept="application/json")
        self.assertEqual(response.code, 200)
        self.assertEqual(len(answers), 3)

    @inlineCallbacks
    def test_matching_rules(self) -> Any:
        cases = [
            # single value, keyword and tag keys
            (f"/studies?StudyInstanceUID={STUDY_B}", [STUDY_B]),
            ("/studies?00100020=PID3", [STUDY_C]),
            ("/studies?PatientID=pid3", []),
            ("/studies?AccessionNumber=ACC1", [STUDY_A]),
            # universal matching returns everything (and the attribute)
            ("/studies?PatientName=", [STUDY_A, STUDY_B, STUDY_C]),
            # UID lists, comma and backslash
            (f"/studies?StudyInstanceUID={STUDY_A},{STUDY_C}", [STUDY_A, STUDY_C]),
            (f"/studies?StudyInstanceUID={STUDY_A}%5C{STUDY_B}", [STUDY_A, STUDY_B]),
            # wildcards, percent-encoded or not
            ("/studies?PatientName=" + quote("Mül*"), [STUDY_A]),
            ("/studies?PatientName=M%3Fller%2A", [STUDY_A]),
            ("/studies?PatientName=*JOHN", [STUDY_C]),
            ("/studies?PatientName=" + quote("Müller^José"), [STUDY_A]),
            ("/studies?PatientName=mül*", [STUDY_A]),  # CaseSensitivePN false (default)
            ("/studies?PatientName=doe^JOHN", [STUDY_C]),
            ("/studies?StudyDescription=" + quote("Chest [CT] 50%"), [STUDY_C]),
            ("/studies?StudyDescription=" + quote("Chest [C*"), [STUDY_C]),
            ("/studies?StudyDescription=*CT*", [STUDY_B, STUDY_C]),
            # person name groups (ideographic, phonetic)
            ("/studies?PatientName=" + quote("山田*"), [STUDY_B]),
            ("/studies?PatientName=" + quote("やまだ^たろう"), [STUDY_B]),
            ("/studies?PatientName=Yamada%5ETarou", [STUDY_B]),
            # ranges
            ("/studies?StudyDate=20240101-20241231", [STUDY_A, STUDY_C]),
            ("/studies?StudyDate=-20231231", [STUDY_B]),
            ("/studies?StudyDate=20240201-", [STUDY_C]),
            ("/studies?StudyDate=20240115", [STUDY_A]),
            ("/studies?StudyTime=09-15", [STUDY_A, STUDY_B]),
            ("/studies?StudyTime=2300-", [STUDY_C]),
            ("/studies?StudyTime=0930", [STUDY_A]),
            ("/studies?PatientBirthDate=-19800101", [STUDY_A]),
            # computed and lower-level attributes
            ("/studies?ModalitiesInStudy=CT", [STUDY_B, STUDY_C]),
            ("/studies?ModalitiesInStudy=SR,US", [STUDY_A]),
            ("/studies?ModalitiesInStudy=M*", [STUDY_A]),
            ("/studies?Modality=MR", [STUDY_A]),
            ("/studies?NumberOfStudyRelatedInstances=2", [STUDY_B]),
            (f"/studies?SOPInstanceUID={SERIES_B1}.2", [STUDY_B]),
            ("/studies?SeriesDate=20240202", [STUDY_C]),
            # any attribute (not indexed) and sequences
            ("/studies?PatientComments=note%20x", [STUDY_A]),
            ("/studies?PatientComments=note*", [STUDY_A]),
            ("/studies?ReferencedStudySequence.ReferencedSOPInstanceUID=1.2.3.4", [STUDY_A]),
            ("/studies?00081110.00081155=1.2.3.5", []),
            # several keys are ANDed
            ("/studies?StudyDate=2024*&ModalitiesInStudy=CT".replace("2024*", "20240101-"),
             [STUDY_C]),
            # fuzzy
            ("/studies?PatientName=jose&fuzzymatching=true", [STUDY_A]),
            ("/studies?PatientName=MUL%20jo&fuzzymatching=true", [STUDY_A]),
            ("/studies?PatientName=" + quote("山田") + "&fuzzymatching=true", [STUDY_B]),
            ("/studies?PatientName=tarou&fuzzymatching=true", [STUDY_B]),
            ("/studies?PatientName=ose&fuzzymatching=true", []),
        ]
        for path, expected in cases:
            found = yield self.find(path)
            self.assertEqual(found, expected, path)

    @inlineCallbacks
    def test_matching_keys_and_includefield_are_returned(self) -> Any:
        _, answers, _ = yield self.get(
            "/studies?PatientComments=&includefield=ReferencedStudySequence"
            "&includefield=00081030,PatientAge&StudyInstanceUID=" + STUDY_A)
        a = answers[0]
        self.assertEqual(a["00104000"]["Value"], ["note x"])
        self.assertEqual(a["00081110"]["Value"][0]["00081155"]["Value"], ["1.2.3.4"])
        self.assertIn("00081030", a)

    @inlineCallbacks
    def test_includefield_all(self) -> Any:
        _, answers, _ = yield self.get(f"/studies?StudyInstanceUID={STUDY_A}&includefield=all")
        a = answers[0]
        self.assertIn("00104000", a)  # PatientComments (patient level)
        self.assertIn("00081110", a)
        self.assertNotIn("00080018", a)  # instance level
        self.assertNotIn("00080060", a)  # series level

    @inlineCallbacks
    def test_errors_name_the_parameter(self) -> Any:
        for query, param in [
            ("StudyDate=2024-01-15", "StudyDate"), ("StudyDate=20241340", "StudyDate"),
            ("limit=-1", "limit"), ("offset=abc", "offset"), ("limit=1.5", "limit"),
            ("StudyInstanceUID=1.2.x", "StudyInstanceUID"), ("StudyTime=99", "StudyTime"),
            ("NumberOfStudyRelatedInstances=many", "NumberOfStudyRelatedInstances"),
            ("fuzzymatching=perhaps", "fuzzymatching"),
        ]:
            response, parsed, body = yield self.get("/studies?" + query)
            self.assertEqual(response.code, 400, query)
            self.assertIn(param, json.loads(body)["Message"], query)

    @inlineCallbacks
    def test_odd_input_is_never_a_server_error(self) -> Any:
        for query in [
            "PatientName=%00", "00100010.00100020=x", "=x", "&&&", "ReferencedStudySequence.=1",
            "StudyDate=--", "StudyDate=-", "StudyTime=.", "includefield=", "includefield=,,",
            "limit=", "AcquisitionDateTime=2020-0500-", "00091001=*", "00091001=x",
            "Modality=C%5B", "PatientName=%5B", "PatientName=%5C", "InstanceNumber=",
            "fuzzymatching=true&PatientName=*", "fuzzymatching=true&PatientName=%25_",
            "StudyInstanceUID=,", "SOPClassesInStudy=1.2*", "NumberOfStudyRelatedInstances=1e3",
            "StudyDate=20200101-20200101-20200101", "PatientName=" + "A" * 5000,
            "SliceThickness=nan", "PixelData=", "ReferencedStudySequence=",
            "includefield=ReferencedStudySequence.ReferencedSOPInstanceUID",
            "PatientName=*%3F*%3F*%3F*%3F*%3F*%3F*%3F*%3F*%3F*%3F*%3Fz",
        ]:
            for level in ("studies", "series", "instances"):
                response, _, _ = yield self.get(f"/{level}?{query}")
                self.assertIn(response.code, (200, 204, 400), f"{level}?{query}")

    @inlineCallbacks
    def test_unknown_key_is_ignored_with_a_warning(self) -> Any:
        response, answers, _ = yield self.get("/studies?NoSuchAttribute=1&PatientID=PID1")
        self.assertEqual(uids(answers), [STUDY_A])
        warning = response.headers.getRawHeaders("warning")
        self.assertEqual(len(warning), 1)
        self.assertTrue(warning[0].startswith("299 "))
        self.assertIn("NoSuchAttribute", warning[0])

    @inlineCallbacks
    def test_bad_utf8_and_accept(self) -> Any:
        response, _, _ = yield self.get("/studies?PatientName=%FF")
        self.assertEqual(response.code, 400)
        response, _, _ = yield self.get("/studies", accept="image/png")
        self.assertEqual(response.code, 406)
        response, _, _ = yield self.get("/studies", accept='multipart/related; type="image/png"')
        self.assertEqual(response.code, 406)

    @inlineCallbacks
    def test_empty_result(self) -> Any:
        """An empty answer is 200 with [] (Orthanc, CP-2473), not 204."""
        response, answers, body = yield self.get("/studies?PatientID=nobody")
        self.assertEqual(response.code, 200)
        self.assertEqual(answers, [])
        self.assertEqual(response.headers.getRawHeaders("content-type"),
                         ["application/dicom+json"])
        self.assertIsNone(response.headers.getRawHeaders("warning"))

    @inlineCallbacks
    def test_empty_result_xml(self) -> Any:
        """Asked as multipart XML, an empty answer is an empty multipart (no part)."""
        response, _, body = yield self.get("/series?Modality=XX",
                                           accept='multipart/related; type="application/dicom+xml"')
        self.assertEqual(response.code, 200)
        ctype = response.headers.getRawHeaders("content-type")[0]
        self.assertTrue(ctype.startswith("multipart/related"), ctype)
        boundary = ctype.split("boundary=")[1].split(";")[0].strip('"')
        self.assertNotIn(b"Content-Type: application/dicom+xml", body)
        self.assertIn(b"--" + boundary.encode() + b"--", body)

    @inlineCallbacks
    def test_doubled_slashes_are_routed(self) -> Any:
        """``/dicom-web//studies`` is served like ``/dicom-web/studies`` (no 308 redirect)."""
        root = self.daemon.config.dicomweb.root
        response, body = yield self.daemon.request("GET", "/" + root + "/studies")
        self.assertEqual(response.code, 200)
        self.assertEqual(len(json.loads(body)), 3)


    @inlineCallbacks
    def test_paging_with_warning(self) -> Any:
        response, answers, _ = yield self.get("/studies?limit=2")
        self.assertEqual(uids(answers), [STUDY_A, STUDY_B])
        warning = response.headers.getRawHeaders("warning")
        self.assertEqual(len(warning), 1)
        self.assertIn("offset=2", warning[0])
        response, answers, _ = yield self.get("/studies?limit=2&offset=2")
        self.assertEqual(uids(answers), [STUDY_C])
        self.assertIsNone(response.headers.getRawHeaders("warning"))
        response, answers, _ = yield self.get("/studies?offset=1")
        self.assertEqual(uids(answers), [STUDY_B, STUDY_C])
        response, answers, _ = yield self.get("/studies?offset=3")
        self.assertEqual((response.code, answers), (200, []))
        response, answers, _ = yield self.get("/studies?offset=" + "9" * 40 + "&limit=" + "9" * 40)
        self.assertEqual((response.code, answers), (200, []))
        # paging with a criterion evaluated in Python (residual)
        response, answers, _ = yield self.get("/studies?NumberOfStudyRelatedSeries=1&limit=1")
        self.assertEqual(uids(answers), [STUDY_B])
        self.assertEqual(len(response.headers.getRawHeaders("warning")), 1)
        response, answers, _ = yield self.get("/studies?NumberOfStudyRelatedSeries=1&limit=1"
                                              "&offset=1")
        self.assertEqual(uids(answers), [STUDY_C])
        self.assertIsNone(response.headers.getRawHeaders("warning"))
        response, answers, _ = yield self.get("/studies?PatientName=*r*&limit=1")
        self.assertEqual(uids(answers), [STUDY_A])
        self.assertEqual(len(response.headers.getRawHeaders("warning")), 1)
        response, answers, _ = yield self.get("/studies?PatientName=*r*&limit=1&offset=1")
        self.assertEqual(uids(answers), [STUDY_B])
        self.assertIsNone(response.headers.getRawHeaders("warning"))

    @inlineCallbacks
    def test_xml(self) -> Any:
        response, _, body = yield self.get(
            f"/studies?StudyInstanceUID={STUDY_A},{STUDY_B}",
            accept='multipart/related; type="application/dicom+xml"')
        self.assertEqual(response.code, 200)
        ctype = response.headers.getRawHeaders("content-type")[0]
        self.assertTrue(ctype.startswith("multipart/related"))
        self.assertIn('type="application/dicom+xml"', ctype)
        boundary = re.search(r"boundary=([^;]+)", ctype).group(1)
        parts = [p for p in body.split(b"--" + boundary.encode())[1:-1]]
        datasets = [xml_to_dataset_json(p.split(b"\r\n\r\n", 1)[1].rstrip(b"\r\n"))
                    for p in parts]
        _, answers, _ = yield self.get(f"/studies?StudyInstanceUID={STUDY_A},{STUDY_B}")
        self.assertEqual(datasets, answers)


class SeriesAndInstanceTests(QidoCase):
    @inlineCallbacks
    def test_series_of_a_study(self) -> Any:
        response, answers, _ = yield self.get(f"/studies/{STUDY_A}/series")
        self.assertEqual(uids(answers, "0020000E"), [SERIES_A1, SERIES_A1[:-1] + "2"])
        s = answers[0]
        self.assertEqual(s["00080060"]["Value"], ["MR"])
        self.assertEqual(s["00201209"], {"vr": "IS", "Value": [3]})
        self.assertEqual(s["00200011"], {"vr": "IS", "Value": [1]})
        self.assertEqual(s["00081190"]["Value"],
                         [f"{self.daemon.dicomweb}/studies/{STUDY_A}/series/{SERIES_A1}"])
        self.assertEqual(s["00100020"]["Value"], ["PID1"])  # the study's attributes too
        found = yield self.find(f"/studies/{STUDY_A}/series?Modality=SR", "0020000E")
        self.assertEqual(found, [SERIES_A1[:-1] + "2"])
        found = yield self.find("/studies/1.2.3/series")
        self.assertEqual(found, [])

    @inlineCallbacks
    def test_all_series_carry_study_attributes(self) -> Any:
        _, answers, _ = yield self.get("/series?Modality=CT&PatientName=" + quote("山田*"))
        self.assertEqual(uids(answers, "0020000E"), [SERIES_B1])
        s = answers[0]
        self.assertEqual(s["00100020"]["Value"], ["PID2"])
        self.assertEqual(s["00201208"]["Value"], [2])
        self.assertEqual(s["0020000D"]["Value"], [STUDY_B])
        found = yield self.find("/series?SeriesDescription=T1*", "0020000E")
        self.assertEqual(found, [SERIES_A1])

    @inlineCallbacks
    def test_instances(self) -> Any:
        _, answers, _ = yield self.get(f"/studies/{STUDY_A}/series/{SERIES_A1}/instances")
        self.assertEqual(uids(answers, "00080018"), [f"{SERIES_A1}.{n}" for n in (1, 2, 3)])
        i = answers[0]
        self.assertEqual(i["00200013"], {"vr": "IS", "Value": [1]})
        self.assertEqual(i["00280010"], {"vr": "US", "Value": [4]})
        self.assertIn("00100020", i)  # parents' attributes, as Orthanc
        self.assertEqual(i["00080060"]["Value"], ["MR"])
        found = yield self.find(f"/studies/{STUDY_A}/instances?InstanceNumber=2", "00080018")
        self.assertEqual(found, [f"{SERIES_A1}.2"])
        found = yield self.find("/instances?SliceThickness=2.5&InstanceNumber=3", "00080018")
        self.assertEqual(found, [f"{SERIES_A1}.3"])
        found = yield self.find("/instances?SOPClassUID=1.2.840.10008.5.1.4.1.1.88.11",
                                "00080018")
        self.assertEqual(found, [SERIES_A1[:-1] + "2.1"])
        _, answers, _ = yield self.get(f"/instances?SOPInstanceUID={SERIES_B1}.1")
        self.assertEqual(answers[0]["00100020"]["Value"], ["PID2"])  # study level
        self.assertEqual(answers[0]["00080060"]["Value"], ["CT"])  # series level
        _, answers, _ = yield self.get(f"/studies/{STUDY_A}/series/{SERIES_A1}/instances"
                                       "?includefield=all&limit=1")
        self.assertIn("00180050", answers[0])
        self.assertEqual(answers[0]["00180050"]["Value"], [2.5])
        self.assertEqual(answers[0]["7FE00010"]["BulkDataURI"],
                         f"{self.daemon.dicomweb}/studies/{STUDY_A}/series/{SERIES_A1}"
                         f"/instances/{SERIES_A1}.1/bulk/7fe00010")


class ParentAttributeTests(QidoCase):
    """Series and instance answers carry their parents' main attributes (PS3.18 10.6.3.3.2/3,
    Orthanc's test_qido_parent_attributes), also when a query key names the parent."""

    @inlineCallbacks
    def test_parents_always_returned(self) -> Any:
        for path in (f"/series?StudyInstanceUID={STUDY_A}", f"/studies/{STUDY_A}/series",
                     f"/instances?StudyInstanceUID={STUDY_A}&SeriesInstanceUID={SERIES_A1}",
                     f"/instances?SeriesInstanceUID={SERIES_A1}",
                     f"/studies/{STUDY_A}/series/{SERIES_A1}/instances"):
            _, answers, _ = yield self.get(path)
            self.assertTrue(answers, path)
            for answer in answers:
                self.assertEqual(answer["0020000D"]["Value"], [STUDY_A], path)
                self.assertEqual(answer["00100020"]["Value"], ["PID1"], path)
                self.assertIn("00100010", answer, path)
                self.assertIn("00080020", answer, path)
                if "instances" not in path:
                    self.assertNotIn("00080018", answer, path)
            if "instances" in path:
                self.assertEqual(answers[0]["00080060"]["Value"], ["MR"], path)
        _, answers, _ = yield self.get(f"/studies/{STUDY_A}/series"
                                       "?includefield=00100010&includefield=StudyDate")
        self.assertIn("00100010", answers[0])
        _, answers, _ = yield self.get("/studies")
        self.assertNotIn("0020000E", answers[0])
        self.assertNotIn("00080018", answers[0])


class ServerLimitTests(QidoCase):
    overrides = {"limit_find_results": 2, "limit_find_instances": 3}

    @inlineCallbacks
    def test_server_maximum(self) -> Any:
        response, answers, _ = yield self.get("/studies")
        self.assertEqual(len(answers), 2)
        warning = response.headers.getRawHeaders("warning")
        self.assertIn("at most 2", warning[0])
        response, answers, _ = yield self.get("/instances")
        self.assertEqual(len(answers), 3)
        self.assertIn("at most 3", response.headers.getRawHeaders("warning")[0])
        response, answers, _ = yield self.get("/studies?limit=1")
        self.assertEqual(len(answers), 1)
        self.assertIn("limit=1", response.headers.getRawHeaders("warning")[0])


class CaseInsensitiveTests(QidoCase):
    dicomweb_overrides = {"qido_case_sensitive": False}

    @inlineCallbacks
    def test_case_insensitive(self) -> Any:
        for path, expected in [
            ("/studies?PatientName=" + quote("MÜL*"), [STUDY_A]),
            ("/studies?PatientName=doe^john", [STUDY_C]),
            ("/studies?PatientID=pid3", [STUDY_C]),
            ("/studies?StudyDescription=brain*", [STUDY_A]),
            ("/studies?ModalitiesInStudy=sr", [STUDY_A]),
            ("/studies?Modality=mr", [STUDY_A]),
            ("/studies?PatientName=" + quote("yamada*"), [STUDY_B]),
            ("/studies?PatientName=muller*", []),
        ]:
            found = yield self.find(path)
            self.assertEqual(found, expected, path)


class CaseSensitivePNTests(QidoCase):
    """``CaseSensitivePN`` (Orthanc's key, default false): PN matching case-insensitive by
    default, case-sensitive when true; other text VRs follow ``QidoCaseSensitive`` only."""

    overrides = {"case_sensitive_pn": True}

    @inlineCallbacks
    def test_case_sensitive_pn(self) -> Any:
        for path, expected in [
            ("/studies?PatientName=mül*", []),
            ("/studies?PatientName=" + quote("Mül*"), [STUDY_A]),
            ("/studies?PatientName=doe^john", []),
            ("/studies?PatientName=DOE^JOHN", [STUDY_C]),
            ("/studies?PatientID=pid3", []),
        ]:
            found = yield self.find(path)
            self.assertEqual(found, expected, path)


def with_pixel_data(ds: pydicom.Dataset, data: bytes) -> bytes:
    """Append zero Pixel Data to a file that has image attributes but none (three charset files
    do; ingest rejects them as truncated).  The original bytes, text encodings included, stay."""
    if "Rows" not in ds or "PixelData" in ds:
        return data
    length = ds.Rows * ds.Columns * (ds.BitsAllocated // 8) * ds.get("SamplesPerPixel", 1)
    length += length % 2
    header = b"\xe0\x7f\x10\x00OW\x00\x00" + length.to_bytes(4, "little")
    return data + header + bytes(length)


class CharsetTests(TestCase):
    """Every file of pydicom's charset_files, found by its UTF-8 name."""

    @inlineCallbacks
    def test_every_charset_file(self) -> Any:
        daemon = start_daemon(self)
        names = sorted(f for f in os.listdir(CHARSET_DIR) if f.endswith(".dcm"))
        checked = 0
        for name in names:
            path = os.path.join(CHARSET_DIR, name)
            ds = pydicom.dcmread(path)
            if "PatientName" not in ds or not ds.PatientName:
                continue
            yield daemon.store.ingest_bytes(with_pixel_data(ds, read(path)))
            pn = ds.PatientName
            whole = str(pn)
            study = ds.StudyInstanceUID
            queries = [whole] + [g for g in (pn.alphabetic, pn.ideographic, pn.phonetic) if g]
            for value in queries:
                url = (daemon.config.dicomweb.root + "studies?PatientName=" + quote(value)
                       + "&StudyInstanceUID=" + study)
                response, body = yield daemon.request("GET", url)
                self.assertEqual(response.code, 200, f"{name}: {value!r}")
                answers = json.loads(body)
                self.assertEqual(len(answers), 1, name)
                got = answers[0]["00100010"]["Value"][0]
                self.assertEqual(got.get("Alphabetic", ""), pn.alphabetic, name)
                self.assertEqual(got.get("Ideographic", ""), pn.ideographic, name)
                self.assertEqual(got.get("Phonetic", ""), pn.phonetic, name)
            checked += 1
        self.assertGreaterEqual(checked, 15)


class DicomwebClientTests(QidoCase):
    """Round trip with the dicomweb-client package (blocking, run in a thread)."""

    @inlineCallbacks
    def test_search_calls(self) -> Any:
        from dicomweb_client.api import DICOMwebClient

        client = DICOMwebClient(url=self.daemon.dicomweb)

        def calls() -> tuple[Any, ...]:
            studies = client.search_for_studies(search_filters={"PatientName": "Mül*"})
            fuzzy = client.search_for_studies(search_filters={"PatientName": "jose"},
                                              fuzzymatching=True)
            paged = client.search_for_studies(limit=1, offset=1)
            series = client.search_for_series(STUDY_A, search_filters={"Modality": "MR"})
            all_series = client.search_for_series(fields=["StudyDescription"])
            instances = client.search_for_instances(STUDY_A, SERIES_A1,
                                                    fields=["SliceThickness"])
            none = client.search_for_studies(search_filters={"PatientID": "nobody"})
            client._session.close()  # noqa: SLF001 - dicomweb-client has no public close
            return studies, fuzzy, paged, series, all_series, instances, none

        studies, fuzzy, paged, series, all_series, instances, none = yield deferToThread(calls)
        self.assertEqual(uids(studies), [STUDY_A])
        self.assertEqual(uids(fuzzy), [STUDY_A])
        self.assertEqual(uids(paged), [STUDY_B])
        self.assertEqual(uids(series, "0020000E"), [SERIES_A1])
        self.assertEqual(len(all_series), 4)
        self.assertIn("00081030", all_series[0])
        self.assertEqual(len(instances), 3)
        self.assertEqual(instances[0]["00180050"]["Value"], [2.5])
        self.assertEqual(none, [])
        ds = pydicom.Dataset.from_json(studies[0])
        self.assertEqual(str(ds.PatientName), "Müller^José")


class StrictEmptyTests(QidoCase):
    dicomweb_overrides = {"qido_empty_no_content": True}

    @inlineCallbacks
    def test_empty_result_is_204(self) -> Any:
        response, _, body = yield self.get("/studies?PatientID=nobody")
        self.assertEqual(response.code, 204)
        self.assertEqual(body, b"")
