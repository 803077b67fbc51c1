"""Orthanc core behaviour beside DICOMweb: ``/tools/find``, ``/tools/lookup``, ``/changes``, and
one SOP Instance UID per instance (refused with 409, or replaced with OverwriteInstances)."""

from __future__ import annotations

import io
import json
import os
import warnings
from dataclasses import replace
from typing import Any

import pydicom
from twisted.internet.defer import inlineCallbacks
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from dwdaemon.dicom.ids import resource_ids
from dwdaemon.store.index.base import DuplicateInstanceError, InstanceRecord
from dwdaemon.store.index.sqlite import SqliteIndex
from dwdaemon.store.ingest import analyse, record_fields
from tests.core.test_store import make_store
from tests.support import read, start_daemon, testdata

CT, MR = "CT_small.dcm", "MR_small.dcm"


def variant(name: str, **changes: Any) -> bytes:
    """A shipped file with some attributes changed."""
    ds = pydicom.dcmread(testdata(name))
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def stow_body(*files: bytes, boundary: str = "XdwcoreX") -> tuple[bytes, dict[str, str]]:
    body = b"".join(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + f
                    + b"\r\n" for f in files) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f'multipart/related; type="application/dicom"; '
                                  f"boundary={boundary}"}


class OrthancCoreMixin:
    overrides: dict[str, Any] = {}

    def setUp(self) -> None:
        warnings.simplefilter("ignore")
        self.addCleanup(warnings.resetwarnings)  # type: ignore[attr-defined]
        self.daemon = start_daemon(self, **self.overrides)

    @inlineCallbacks
    def call(self, method: str, path: str, data: Any = None, code: int = 200,
             headers: dict[str, str] | None = None) -> Any:
        if data is not None and not isinstance(data, bytes):
            data = json.dumps(data).encode() if not isinstance(data, str) else data.encode()
        response, body = yield self.daemon.request(method, path, data=data, headers=headers)
        self.assertEqual(response.code, code, body)  # type: ignore[attr-defined]
        return json.loads(body) if body else None

    def upload(self, data: bytes, code: int = 200) -> Any:
        return self.call("POST", "/instances", data, code)


class FindLookupTests(OrthancCoreMixin, TestCase):
    @inlineCallbacks
    def test_find_levels_queries_and_options(self) -> Any:
        ct = yield self.upload(read(testdata(CT)))
        mr = yield self.upload(variant(MR, SpecificCharacterSet="ISO_IR 192",
                                        PatientName="Гусева^Анна", StudyDate="20200315"))
        find = lambda body: self.call("POST", "/tools/find", body)  # noqa: E731
        # PN: case- and accent-insensitive by default (CaseSensitivePN false)
        for name in ("Гусева*", "гусева*", "ГУСЕВА^АННА"):
            got = yield find({"Level": "Patient", "Query": {"PatientName": name}})
            self.assertEqual(got, [mr["ParentPatient"]], name)
        got = yield find({"Level": "Patient", "Query": {"PatientName": "гусева*"},
                          "CaseSensitive": True})
        self.assertEqual(got, [])
        # other VRs are case-sensitive; tags by keyword or number; lists; ranges
        got = yield find({"Level": "Study", "Query": {"0008,0020": "20200101-20201231"}})
        self.assertEqual(got, [mr["ParentStudy"]])
        got = yield find({"Level": "Series", "Query": {"00080060": "ct\\MR"}})
        self.assertEqual(got, [mr["ParentSeries"]])
        got = yield find({"Level": "Instance", "Query": {"Modality": "CT\\MR"}})
        self.assertEqual(got, [ct["ID"], mr["ID"]])  # arrival order, parents' tags matched
        # other attributes: matched on an instance of the resource (Orthanc reads one too)
        got = yield find({"Level": "Study", "Query": {"Rows": "64"}})
        self.assertEqual(got, [mr["ParentStudy"]])
        got = yield find({"Level": "Instance", "Query": {"Rows": "128", "PatientName": "*"}})
        self.assertEqual(got, [ct["ID"]])
        got = yield find({"Level": "Study", "Query": {"Modality": "MR"}})
        self.assertEqual(got, [])  # a series tag is not looked for at the study level
        # identifiers asked exactly (selected by index columns)
        ct_ds = pydicom.dcmread(testdata(CT))
        got = yield find({"Level": "Instance", "Query": {"SOPInstanceUID": ct_ds.SOPInstanceUID}})
        self.assertEqual(got, [ct["ID"]])
        got = yield find({"Level": "Series", "Query": {"StudyInstanceUID":
                                                       ct_ds.StudyInstanceUID,
                                                       "PatientID": ct_ds.PatientID}})
        self.assertEqual(got, [ct["ParentSeries"]])
        got = yield find({"Level": "Study", "Query": {"PatientID": ct_ds.PatientID.lower()}})
        self.assertEqual(got, [])  # LO: case-sensitive
        got = yield find({"Level": "Instance", "Query": {}, "Since": 1, "Limit": 1})
        self.assertEqual(got, [mr["ID"]])
        got = yield find({"Level": "Study", "Query": {"PatientName": "*"}, "Limit": 1,
                          "Expand": True})
        self.assertEqual([s["ID"] for s in got], [ct["ParentStudy"]])
        self.assertIn("StudyDate", got[0]["MainDicomTags"])
        self.assertIn("PatientName", got[0]["PatientMainDicomTags"])
        full = yield find({"Level": "Study", "Query": {"StudyDate": "2020*"}, "Expand": True,
                           "Full": True})
        self.assertEqual(full[0]["MainDicomTags"]["0008,0020"],
                         {"Name": "StudyDate", "Type": "String", "Value": "20200315"})
        self.assertEqual(full[0]["PatientMainDicomTags"]["0010,0010"]["Value"], "Гусева^Анна")
        short = yield find({"Level": "Study", "Query": {"StudyDate": "2020*"}, "Expand": True,
                            "Short": True})
        self.assertEqual(short[0]["MainDicomTags"]["0008,0020"], "20200315")
        # Orthanc's 400s
        for bad in ({"Query": {}}, {"Level": "Study"}, {"Level": "Nope", "Query": {}},
                    {"Level": "Study", "Query": {"NoSuchKeyword": "x"}},
                    {"Level": "Study", "Query": {}, "Limit": -1}):
            yield self.call("POST", "/tools/find", bad, code=400)
        yield self.call("POST", "/tools/find", b"{not json", code=400)

    @inlineCallbacks
    def test_lookup(self) -> Any:
        ct = yield self.upload(read(testdata(CT)))
        ds = pydicom.dcmread(testdata(CT))
        for identifier, level, key in ((ds.PatientID, "patients", "ParentPatient"),
                                       (ds.StudyInstanceUID, "studies", "ParentStudy"),
                                       (ds.SeriesInstanceUID, "series", "ParentSeries"),
                                       (ds.SOPInstanceUID, "instances", "ID")):
            got = yield self.call("POST", "/tools/lookup", f"{identifier}\n")
            self.assertEqual(got, [{"ID": ct[key], "Path": f"/{level}/{ct[key]}",
                                    "Type": {"patients": "Patient", "studies": "Study",
                                             "series": "Series",
                                             "instances": "Instance"}[level]}])
        got = yield self.call("POST", "/tools/lookup", "1.2.3.nope")
        self.assertEqual(got, [])


class ChangesTests(OrthancCoreMixin, TestCase):
    @inlineCallbacks
    def test_ingest_and_delete_events(self) -> Any:
        empty = yield self.call("GET", "/changes")
        self.assertEqual(empty, {"Changes": [], "Done": True, "Last": 0})
        ct = yield self.upload(read(testdata(CT)))
        again = yield self.upload(read(testdata(CT)))
        self.assertEqual(again["Status"], "AlreadyStored")
        doc = yield self.call("GET", "/changes")
        kinds = [(c["ChangeType"], c["ResourceType"], c["ID"]) for c in doc["Changes"]]
        self.assertEqual(kinds, [("NewInstance", "Instance", ct["ID"]),
                                 ("NewSeries", "Series", ct["ParentSeries"]),
                                 ("NewStudy", "Study", ct["ParentStudy"]),
                                 ("NewPatient", "Patient", ct["ParentPatient"])])
        first = doc["Changes"][0]
        self.assertEqual(first["Path"], f"/instances/{ct['ID']}")
        self.assertEqual(len(first["Date"]), 15)  # 20260101T120000
        self.assertEqual([c["Seq"] for c in doc["Changes"]], [1, 2, 3, 4])
        self.assertEqual((doc["Done"], doc["Last"]), (True, 4))
        page = yield self.call("GET", "/changes?since=1&limit=2")
        self.assertEqual([c["Seq"] for c in page["Changes"]], [2, 3])
        self.assertEqual((page["Done"], page["Last"]), (False, 3))
        last = yield self.call("GET", "/changes?last")
        self.assertEqual([c["ChangeType"] for c in last["Changes"]], ["NewPatient"])
        # a second instance of the same series logs only NewInstance
        mr_in_series = yield self.upload(variant(CT, SOPInstanceUID="1.2.3.4.5.6.7"))
        page = yield self.call("GET", "/changes?since=4")
        self.assertEqual([(c["ChangeType"], c["ID"]) for c in page["Changes"]],
                         [("NewInstance", mr_in_series["ID"])])
        # deleting the patient logs every resource that went
        yield self.call("DELETE", f"/patients/{ct['ParentPatient']}")
        page = yield self.call("GET", "/changes?since=5")
        gone = sorted((c["ChangeType"], c["ResourceType"]) for c in page["Changes"])
        self.assertEqual(gone, [("Deleted", "Instance"), ("Deleted", "Instance"),
                                ("Deleted", "Patient"), ("Deleted", "Series"),
                                ("Deleted", "Study")])
        self.assertEqual((page["Done"], page["Last"]), (True, 10))
        yield self.call("GET", "/changes?limit=x", code=400)
        yield self.call("DELETE", "/changes")
        cleared = yield self.call("GET", "/changes")
        self.assertEqual(cleared["Changes"], [])
        yield self.upload(read(testdata(MR)))
        after = yield self.call("GET", "/changes")
        self.assertEqual(after["Changes"][0]["Seq"], 11)  # numbers keep growing

    @inlineCallbacks
    def test_changes_survive_a_restart(self) -> Any:
        directory = self.mktemp()
        daemon = start_daemon(self, directory)
        yield daemon.request("POST", "/instances", data=read(testdata(CT)))
        yield daemon.stop()
        self.daemon = start_daemon(self, directory)
        doc = yield self.call("GET", "/changes")
        self.assertEqual(len(doc["Changes"]), 4)


class DuplicateSopTests(OrthancCoreMixin, TestCase):
    """One SOP Instance UID, one instance (OverwriteInstances false: refused)."""

    @inlineCallbacks
    def test_second_patient_refused(self) -> Any:
        first = yield self.upload(read(testdata(CT)))
        other = variant(CT, PatientID="someone-else")
        error = yield self.upload(other, code=409)
        self.assertIn("SOP Instance UID", error["Message"])
        self.assertEqual(error["Details"], {"FailureReason": 0x0111})
        ids = yield self.call("GET", "/instances")
        self.assertEqual(ids, [first["ID"]])
        # STOW-RS: FailedSOPSequence item with 0x0111, 409 when nothing else was stored
        body, headers = stow_body(other)
        doc = yield self.call("POST", "/dicom-web/studies", body, code=409, headers=headers)
        item = doc["00081198"]["Value"][0]
        ds = pydicom.dcmread(testdata(CT))
        self.assertEqual(item["00081155"]["Value"], [ds.SOPInstanceUID])
        self.assertEqual(item["00081197"]["Value"], [0x0111])
        # with a good instance beside it: 202
        body, headers = stow_body(other, read(testdata(MR)))
        doc = yield self.call("POST", "/dicom-web/studies", body, code=202, headers=headers)
        self.assertEqual(len(doc["00081199"]["Value"]), 1)
        found = yield self.call("GET", f"/dicom-web/instances?SOPInstanceUID={ds.SOPInstanceUID}")
        self.assertEqual(len(found), 1)
        patients = yield self.call("GET", "/patients")
        self.assertEqual(len(patients), 2)  # CT's and MR's; no "someone-else"
        # the same file again is still AlreadyStored
        again = yield self.upload(read(testdata(CT)))
        self.assertEqual(again["Status"], "AlreadyStored")


class DuplicateSopOverwriteTests(OrthancCoreMixin, TestCase):
    """OverwriteInstances true: the new instance replaces the old one, which goes whole."""

    overrides = {"overwrite_instances": True}

    @inlineCallbacks
    def test_second_patient_replaces(self) -> Any:
        first = yield self.upload(read(testdata(CT)))
        (old_file,) = self.daemon.store.index.file_uuids()
        other = variant(CT, PatientID="someone-else")
        second = yield self.upload(other)
        self.assertEqual(second["Status"], "Success")
        self.assertNotEqual(second["ID"], first["ID"])
        ids = yield self.call("GET", "/instances")
        self.assertEqual(ids, [second["ID"]])
        patients = yield self.call("GET", "/patients")
        self.assertEqual(patients, [second["ParentPatient"]])  # the old patient went too
        response, body = yield self.daemon.request("GET", f"/instances/{second['ID']}/file")
        self.assertEqual(body, other)
        (new_file,) = self.daemon.store.index.file_uuids()
        self.assertTrue(self.daemon.store.storage.exists(new_file))
        self.assertFalse(self.daemon.store.storage.exists(old_file))  # removed after commit
        changes = yield self.call("GET", "/changes?since=4")
        self.assertIn(("Deleted", "Patient", first["ParentPatient"]),
                      [(c["ChangeType"], c["ResourceType"], c["ID"]) for c in changes["Changes"]])
        # STOW-RS of the first file back: replaces again
        body, headers = stow_body(read(testdata(CT)))
        yield self.call("POST", "/dicom-web/studies", body, headers=headers)
        ids = yield self.call("GET", "/instances")
        self.assertEqual(ids, [first["ID"]])


class LegacyDuplicatesTests(TestCase):
    """An index written before the unique rule, already holding a duplicate, still opens
    (warning, no unique index) and refuses new duplicates."""

    def test_open_with_duplicates(self) -> None:
        warnings.simplefilter("ignore")
        self.addCleanup(warnings.resetwarnings)
        directory = self.mktemp()
        store = make_store(directory, synchronous=True)
        store.ingest_bytes(read(testdata(CT)))
        index = store.index
        index.connection().execute("DROP INDEX instances_sop_unique")
        columns = [r[1] for r in index.fetch_all("PRAGMA table_info(instances)") if r[1] != "pk"]
        listed = ", ".join(columns)
        chosen = ", ".join("'copy'" if c == "public_id" else c for c in columns)
        index.connection().execute(
            f"INSERT INTO instances ({listed}) SELECT {chosen} FROM instances")
        store.pools.stop()
        store.close()

        seen: list[str] = []

        def observer(event: dict) -> None:
            if "several instances" in str(event.get("log_format", "")):
                seen.append(event["uids"])

        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        reopened = SqliteIndex(os.path.join(directory, "index"))
        reopened.open()
        self.addCleanup(reopened.close)
        sop = str(pydicom.dcmread(testdata(CT)).SOPInstanceUID)
        self.assertEqual(seen, [f"{sop} x2"])
        self.assertEqual(reopened.fetch_all("SELECT COUNT(*) FROM instances")[0][0], 2)
        path = self.mktemp()
        with open(path, "wb") as fp:
            fp.write(variant(CT, PatientID="another"))
        analysis = analyse(path)
        record = InstanceRecord(file_uuid="f", file_size=1, file_md5="m",
                                **record_fields(analysis))
        record = replace(record, ids=resource_ids("another", analysis.study_uid,
                                                  analysis.series_uid, sop))
        with self.assertRaises(DuplicateInstanceError):
            reopened.add_instance(record, overwrite=False)
