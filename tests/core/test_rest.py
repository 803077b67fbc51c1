"""The Orthanc-style core API over a real loopback port."""

from __future__ import annotations

import io
import json
import warnings

from pydicom import dcmread
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.support import read, start_daemon, testdata

CT = {
    "patient": "fa558bce-587a86d3-ad0da9b3-9d043d9d-4f5c5718",
    "study": "8a8cf898-ca27c490-d0c7058c-929d0581-2bbf104d",
    "series": "93034833-163e42c3-bc9a428b-194620cf-2c5799e5",
    "instance": "f689ddd2-662f8fe1-8b18180d-ec2a2cee-937917af",
}
VARIED = ["CT_small.dcm", "MR_small_bigendian.dcm", "JPEG2000.dcm", "SC_rgb_rle_2frame.dcm",
          "rtdose.dcm", "rtplan.dcm", "test-SR.dcm", "waveform_ecg.dcm", "image_dfl.dcm",
          "examples_ybr_color.dcm"]


class CoreApiTests(TestCase):
    def setUp(self) -> None:
        warnings.simplefilter("ignore")
        self.addCleanup(warnings.resetwarnings)
        self.daemon = start_daemon(self)

    @inlineCallbacks
    def upload(self, name: str) -> object:
        response, body = yield self.daemon.request("POST", "/instances",
                                                   data=read(testdata(name)))
        self.assertEqual(response.code, 200, body)
        return json.loads(body)

    @inlineCallbacks
    def get_json(self, path: str, code: int = 200) -> object:
        response, body = yield self.daemon.request("GET", path)
        self.assertEqual(response.code, code, body)
        self.assertTrue(response.headers.getRawHeaders("content-type")[0]
                        .startswith("application/json"))
        return json.loads(body)

    @inlineCallbacks
    def test_upload_answer_and_already_stored(self) -> None:
        answer = yield self.upload("CT_small.dcm")
        self.assertEqual(answer, {
            "ID": CT["instance"], "ParentPatient": CT["patient"], "ParentStudy": CT["study"],
            "ParentSeries": CT["series"], "Path": f"/instances/{CT['instance']}",
            "Status": "Success"})
        again = yield self.upload("CT_small.dcm")
        self.assertEqual(again["Status"], "AlreadyStored")

    @inlineCallbacks
    def test_varied_files_round_trip_byte_for_byte(self) -> None:
        for name in VARIED:
            answer = yield self.upload(name)
            response, body = yield self.daemon.request("GET", answer["Path"] + "/file")
            self.assertEqual(response.code, 200)
            self.assertEqual(response.headers.getRawHeaders("content-type"),
                             ["application/dicom"])
            self.assertEqual(body, read(testdata(name)), name)
        ids = yield self.get_json("/instances")
        self.assertEqual(len(ids), len(VARIED))

    @inlineCallbacks
    def test_hierarchy(self) -> None:
        yield self.upload("CT_small.dcm")
        patients = yield self.get_json("/patients")
        self.assertEqual(patients, [CT["patient"]])
        patient = yield self.get_json(f"/patients/{CT['patient']}")
        self.assertEqual(patient["Type"], "Patient")
        self.assertEqual(patient["Studies"], [CT["study"]])
        self.assertEqual(patient["MainDicomTags"]["PatientID"], "1CT1")
        study = yield self.get_json(f"/studies/{CT['study']}")
        self.assertEqual((study["Type"], study["ParentPatient"], study["Series"]),
                         ("Study", CT["patient"], [CT["series"]]))
        self.assertEqual(study["PatientMainDicomTags"]["PatientName"], "CompressedSamples^CT1")
        series = yield self.get_json(f"/series/{CT['series']}")
        self.assertEqual((series["Type"], series["ParentStudy"], series["Instances"]),
                         ("Series", CT["study"], [CT["instance"]]))
        self.assertEqual(series["MainDicomTags"]["Modality"], "CT")
        instance = yield self.get_json(f"/instances/{CT['instance']}")
        self.assertEqual((instance["Type"], instance["ParentSeries"]),
                         ("Instance", CT["series"]))
        self.assertEqual(instance["MainDicomTags"]["SOPInstanceUID"],
                         "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322")
        self.assertEqual(instance["FileSize"], len(read(testdata("CT_small.dcm"))))
        expanded = yield self.get_json("/studies?expand")
        self.assertEqual(expanded[0]["ID"], CT["study"])
        children = yield self.get_json(f"/patients/{CT['patient']}/instances")
        self.assertEqual([c["ID"] for c in children], [CT["instance"]])

    @inlineCallbacks
    def test_since_limit(self) -> None:
        for name in ("CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm"):
            yield self.upload(name)
        every = yield self.get_json("/instances")
        page = yield self.get_json("/instances?since=1&limit=1")
        self.assertEqual(page, every[1:2])
        yield self.get_json("/instances?limit=-1", code=400)

    @inlineCallbacks
    def test_tags(self) -> None:
        yield self.upload("CT_small.dcm")
        tags = yield self.get_json(f"/instances/{CT['instance']}/tags")
        self.assertEqual(tags["0010,0010"], {"Name": "PatientName", "Type": "String",
                                             "Value": "CompressedSamples^CT1"})
        self.assertEqual(tags["7fe0,0010"]["Type"], "TooLong")
        simple = yield self.get_json(f"/instances/{CT['instance']}/tags?simplify")
        self.assertEqual(simple["PatientName"], "CompressedSamples^CT1")
        self.assertEqual(simple["ImageOrientationPatient"], "1\\0\\0\\0\\1\\0")
        short = yield self.get_json(f"/instances/{CT['instance']}/tags?short")
        self.assertEqual(short["0010,0010"], "CompressedSamples^CT1")

    @inlineCallbacks
    def test_tags_nested_sequences(self) -> None:
        answer = yield self.upload("rtplan.dcm")
        simple = yield self.get_json(f"/instances/{answer['ID']}/tags?simplify")
        ds = dcmread(testdata("rtplan.dcm"))
        beams = simple["BeamSequence"]
        self.assertEqual(len(beams), len(ds.BeamSequence))
        self.assertEqual(beams[0]["BeamName"], ds.BeamSequence[0].BeamName)

    @inlineCallbacks
    def test_content(self) -> None:
        answer = yield self.upload("rtplan.dcm")
        base = f"/instances/{answer['ID']}/content"
        root = yield self.get_json(base)
        self.assertIn("300a-00b0", root)
        ds = dcmread(testdata("rtplan.dcm"))
        response, body = yield self.daemon.request("GET", base + "/0010-0010")
        self.assertEqual(body.decode(), str(ds.PatientName))
        items = yield self.get_json(base + "/300a-00b0")
        self.assertEqual(items, [str(i) for i in range(len(ds.BeamSequence))])
        response, body = yield self.daemon.request("GET", base + "/300a-00b0/0/300a-00c2")
        self.assertEqual(body.decode(), ds.BeamSequence[0].BeamName)
        yield self.get_json(base + "/300a-00b0/9/300a-00c2", code=404)
        yield self.get_json(base + "/zzzz", code=404)

    @inlineCallbacks
    def test_content_bulk_value_is_read_from_the_file(self) -> None:
        yield self.upload("CT_small.dcm")
        response, body = yield self.daemon.request(
            "GET", f"/instances/{CT['instance']}/content/7fe0-0010")
        self.assertEqual(body, dcmread(testdata("CT_small.dcm")).PixelData)

    @inlineCallbacks
    def test_delete(self) -> None:
        yield self.upload("CT_small.dcm")
        yield self.upload("MR_small.dcm")
        response, body = yield self.daemon.request("DELETE", f"/instances/{CT['instance']}")
        self.assertEqual(response.code, 200)
        self.assertEqual(json.loads(body), {"RemainingAncestor": None})
        yield self.get_json(f"/instances/{CT['instance']}", code=404)
        yield self.get_json(f"/patients/{CT['patient']}", code=404)
        stats = yield self.get_json("/statistics")
        self.assertEqual((stats["CountPatients"], stats["CountInstances"]), (1, 1))
        response, _ = yield self.daemon.request("DELETE", f"/studies/{CT['study']}")
        self.assertEqual(response.code, 404)

    @inlineCallbacks
    def test_delete_keeps_remaining_ancestor(self) -> None:
        ds = dcmread(testdata("CT_small.dcm"))
        ds.SOPInstanceUID = ds.SOPInstanceUID + ".2"
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        yield self.upload("CT_small.dcm")
        response, body = yield self.daemon.request("POST", "/instances",
                                                   data=buffer.getvalue())
        second = json.loads(body)
        self.assertEqual(second["ParentSeries"], CT["series"])
        response, body = yield self.daemon.request("DELETE", second["Path"])
        self.assertEqual(json.loads(body)["RemainingAncestor"],
                         {"ID": CT["series"], "Path": f"/series/{CT['series']}",
                          "Type": "Series"})
        series = yield self.get_json(f"/series/{CT['series']}")
        self.assertEqual(series["Instances"], [CT["instance"]])

    @inlineCallbacks
    def test_system_statistics_plugins(self) -> None:
        system = yield self.get_json("/system")
        self.assertEqual(system["Name"], "MyOrthanc")
        self.assertEqual(system["DatabaseBackend"], "SQLite")
        self.assertIn("ApiVersion", system)
        self.assertIn("Version", system)
        yield self.upload("CT_small.dcm")
        stats = yield self.get_json("/statistics")
        self.assertEqual(stats["CountInstances"], 1)
        self.assertEqual(int(stats["TotalDiskSize"]), len(read(testdata("CT_small.dcm"))))
        plugins = yield self.get_json("/plugins")
        self.assertEqual(plugins, ["dicom-web"])
        plugin = yield self.get_json("/plugins/dicom-web")
        self.assertEqual(plugin["ID"], "dicom-web")
        self.assertIn("Version", plugin)

    @inlineCallbacks
    def test_errors_are_json_with_the_right_status(self) -> None:
        cases = [
            ("POST", "/instances", b"", 400),
            ("POST", "/instances", b"not dicom at all" * 100, 400),
            ("POST", "/instances", read(testdata("CT_small.dcm"))[:3000], 400),
            ("POST", "/instances", read(testdata("no_meta.dcm")), 400),
            ("GET", "/instances/unknown", None, 404),
            ("GET", "/nothing/here", None, 404),
            ("PUT", "/instances", b"x", 405),
            ("DELETE", "/system", None, 405),
        ]
        for method, path, data, code in cases:
            response, body = yield self.daemon.request(method, path, data=data)
            self.assertEqual(response.code, code, (method, path, body))
            doc = json.loads(body)
            self.assertEqual(doc["HttpStatus"], code)
            self.assertTrue(doc["Message"])
            self.assertNotIn(b"Traceback", body)
            if code == 405:
                self.assertTrue(response.headers.getRawHeaders("allow"))
        # Orthanc's Allow spelling (no HEAD, no spaces)
        response, body = yield self.daemon.request("PUT", "/dicom-web/studies", data=b"x")
        self.assertEqual(response.code, 405)
        self.assertEqual(response.headers.getRawHeaders("allow"), ["GET,POST"])
        response, body = yield self.daemon.request("GET", "/plugins/dicom-web")
        self.assertEqual(json.loads(body)["Version"], "1.19.0")
        ids = yield self.get_json("/instances")
        self.assertEqual(ids, [])
        self.assertEqual(list(self.daemon.store.storage.iter_files()), [])

    @inlineCallbacks
    def test_missing_uids_message(self) -> None:
        response, body = yield self.daemon.request(
            "POST", "/instances", data=read(testdata("nested_priv_SQ.dcm")))
        self.assertEqual(response.code, 400)
        self.assertIn("SOPInstanceUID", json.loads(body)["Message"])


class RequestLimitTests(TestCase):
    @inlineCallbacks
    def test_body_over_the_limit_is_413(self) -> None:
        daemon = start_daemon(self, maximum_upload_size=1)
        response, body = yield daemon.request("POST", "/instances", data=b"\0" * (2 << 20))
        self.assertEqual(response.code, 413)
        ids = yield daemon.request("GET", "/instances")
        self.assertEqual(json.loads(ids[1]), [])


class FullDiskTests(TestCase):
    @inlineCallbacks
    def test_full_disk_is_507(self) -> None:
        import errno

        from dwdaemon.store import storage as storage_module

        daemon = start_daemon(self)

        def no_space(fd: int) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        self.patch(storage_module.os, "fsync", no_space)
        self.patch(storage_module.os, "fdatasync", no_space)
        response, body = yield daemon.request("POST", "/instances",
                                              data=read(testdata("CT_small.dcm")))
        self.assertEqual(response.code, 507)
        self.assertIn("full", json.loads(body)["Message"])
        self.assertEqual(list(daemon.store.storage.iter_files()), [])
