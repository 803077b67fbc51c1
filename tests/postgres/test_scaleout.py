"""Scale-out: two daemons in this process sharing one PostgreSQL schema and one storage area."""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.core.test_store import assert_consistent
from tests.postgres.support import new_schema, start_pg_daemon
from tests.qido.data import instance
from tests.stow.test_stow_web import ctype, multipart
from tests.support import read, testdata

FILES = ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "rtplan.dcm", "rtdose.dcm",
         "SC_rgb_rle_2frame.dcm", "liver_1frame.dcm", "reportsi.dcm"]
STUDY = "1.2.826.0.1.3680043.8.498.1"


class ScaleOutTests(TestCase):
    def setUp(self) -> None:
        schema = new_schema(self)
        directory = self.mktemp()
        self.a = start_pg_daemon(self, schema, directory)
        self.b = start_pg_daemon(self, schema, directory)
        self.assertEqual(self.a.store.storage.root, self.b.store.storage.root)

    @inlineCallbacks
    def json_of(self, daemon: Any, path: str, code: int = 200) -> Any:
        response, body = yield daemon.request("GET", path, headers={
            "Accept": ["application/dicom+json, application/json"]})
        self.assertEqual(response.code, code, body)
        return json.loads(body) if body else None

    @inlineCallbacks
    def test_stow_to_one_read_from_the_other(self) -> Any:
        data = read(testdata("CT_small.dcm"))
        response, body = yield self.a.request(
            "POST", "/dicom-web/studies", data=multipart([data]),
            headers={"Content-Type": [ctype()], "Accept": ["application/dicom+json"]})
        self.assertEqual(response.code, 200, body)
        studies = yield self.json_of(self.b, "/dicom-web/studies?PatientID=1CT1")
        self.assertEqual(len(studies), 1)
        study = studies[0]["0020000D"]["Value"][0]
        instances = yield self.json_of(self.b, f"/dicom-web/studies/{study}/instances")
        self.assertEqual(len(instances), 1)
        url = instances[0]["00081190"]["Value"][0]
        self.assertTrue(url.startswith(self.b.url), url)
        response, body = yield self.b.request(
            "GET", url, headers={"Accept": ['multipart/related; type="application/dicom"']})
        self.assertEqual(response.code, 200)
        self.assertIn(data, body)
        metadata = yield self.json_of(self.b, f"/dicom-web/studies/{study}/metadata")
        self.assertEqual(metadata[0]["00100020"]["Value"], ["1CT1"])
        system = yield self.json_of(self.b, "/system")
        self.assertEqual(system["DatabaseBackend"], "PostgreSQL")
        stats = yield self.json_of(self.a, "/statistics")
        self.assertEqual(stats["CountInstances"], 1)
        # A delete through one daemon is seen by the other.
        patients = yield self.json_of(self.b, "/patients")
        response, _ = yield self.b.request("DELETE", f"/patients/{patients[0]}")
        self.assertEqual(response.code, 200)
        response, _ = yield self.a.request("GET", f"/dicom-web/studies/{study}/metadata")
        self.assertEqual(response.code, 404)
        self.assertEqual(assert_consistent(self, self.a.store), 0)

    @inlineCallbacks
    def test_concurrent_uploads_of_the_same_instances(self) -> Any:
        uploads = []
        for name in FILES:
            data = read(testdata(name))
            for daemon in (self.a, self.b, self.a, self.b):
                uploads.append(daemon.request("POST", "/instances", data=data))
        answers = yield gatherResults(uploads)
        statuses: dict[str, list[str]] = {}
        for response, body in answers:
            self.assertEqual(response.code, 200, body)
            answer = json.loads(body)
            statuses.setdefault(answer["ID"], []).append(answer["Status"])
        self.assertEqual(len(statuses), len(FILES))
        for got in statuses.values():
            self.assertEqual(sorted(got), ["AlreadyStored"] * 3 + ["Success"])
        self.assertEqual(assert_consistent(self, self.a.store), len(FILES))
        for daemon in (self.a, self.b):
            stats = yield self.json_of(daemon, "/statistics")
            self.assertEqual(stats["CountInstances"], len(FILES))

    @inlineCallbacks
    def test_concurrent_instances_of_one_new_study(self) -> Any:
        # Both daemons create the same patient, study and series at once: one row each.
        datas = [instance(f"{STUDY}.1.{n}", STUDY, f"{STUDY}.1", PatientID="SCALE",
                          PatientName="Scale^Out", Modality="CT", InstanceNumber=str(n))
                 for n in range(24)]
        answers = yield gatherResults([
            (self.a if n % 2 else self.b).request("POST", "/instances", data=data)
            for n, data in enumerate(datas)])
        self.assertEqual({json.loads(body)["Status"] for _, body in answers}, {"Success"})
        for daemon in (self.a, self.b):
            stats = yield self.json_of(daemon, "/statistics")
            self.assertEqual((stats["CountPatients"], stats["CountStudies"],
                              stats["CountSeries"], stats["CountInstances"]), (1, 1, 1, 24))
        found = yield self.json_of(self.b, f"/dicom-web/studies?StudyInstanceUID={STUDY}"
                                           "&includefield=NumberOfStudyRelatedInstances")
        self.assertEqual(found[0]["00201208"]["Value"], [24])
        self.assertEqual(assert_consistent(self, self.b.store), 24)

    @inlineCallbacks
    def test_delete_racing_with_uploads_into_the_same_study(self) -> Any:
        # One daemon deletes instances of a study while the other adds more: the parents of
        # surviving instances survive, and the store stays consistent.
        datas = [instance(f"{STUDY}.2.{n}", STUDY, f"{STUDY}.2", PatientID="RACE",
                          Modality="MR") for n in range(16)]
        first = yield gatherResults([self.a.request("POST", "/instances", data=d)
                                     for d in datas[:8]])
        ids = [json.loads(body)["ID"] for _, body in first]
        work = [self.b.request("POST", "/instances", data=d) for d in datas[8:]]
        work += [self.a.request("DELETE", f"/instances/{i}") for i in ids]
        answers = yield gatherResults(work)
        self.assertEqual({r.code for r, _ in answers}, {200})
        stats = yield self.json_of(self.b, "/statistics")
        self.assertEqual((stats["CountPatients"], stats["CountStudies"],
                          stats["CountSeries"], stats["CountInstances"]), (1, 1, 1, 8))
        self.assertEqual(assert_consistent(self, self.a.store), 8)

    def test_shared_storage_directory(self) -> None:
        self.assertTrue(os.path.isdir(self.a.store.storage.tmp))
        self.assertEqual(self.a.store.orphan_min_age, 3600.0)

    @inlineCallbacks
    def test_concurrent_same_sop_under_different_patients(self) -> Any:
        """Two daemons storing one SOP Instance UID under different patients at once keep one
        instance: the other answers 409 (the unique index decides the race)."""
        import io

        import pydicom

        variants = []
        for n in range(4):
            ds = pydicom.dcmread(testdata("CT_small.dcm"))
            ds.PatientID = f"patient-{n}"
            buf = io.BytesIO()
            ds.save_as(buf, enforce_file_format=True)
            variants.append(buf.getvalue())
        answers = yield gatherResults([
            daemon.request("POST", "/instances", data=data)
            for data, daemon in zip(variants, (self.a, self.b, self.a, self.b), strict=True)])
        codes = sorted(response.code for response, _ in answers)
        self.assertEqual(codes, [200, 409, 409, 409])
        instances = yield self.json_of(self.a, "/instances")
        self.assertEqual(len(instances), 1)
        patients = yield self.json_of(self.b, "/patients")
        self.assertEqual(len(patients), 1)
        self.assertEqual(assert_consistent(self, self.a.store), 1)  # one row, one file
