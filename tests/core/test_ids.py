"""Orthanc identifiers."""

from __future__ import annotations

from pydicom import dcmread
from twisted.trial.unittest import SynchronousTestCase

from dwdaemon.dicom.ids import looks_like_orthanc_id, orthanc_hash, resource_ids
from tests.support import testdata


class IdentifierTests(SynchronousTestCase):
    def test_ct_small_known_values(self) -> None:
        ds = dcmread(testdata("CT_small.dcm"))
        ids = resource_ids(ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID,
                           ds.SOPInstanceUID)
        self.assertEqual(ids.patient, "fa558bce-587a86d3-ad0da9b3-9d043d9d-4f5c5718")
        self.assertEqual(ids.study, "8a8cf898-ca27c490-d0c7058c-929d0581-2bbf104d")
        self.assertEqual(ids.series, "93034833-163e42c3-bc9a428b-194620cf-2c5799e5")
        self.assertEqual(ids.instance, "f689ddd2-662f8fe1-8b18180d-ec2a2cee-937917af")

    def test_padding_is_stripped(self) -> None:
        self.assertEqual(resource_ids("P ", "1.2\x00", "1.3", "1.4 "),
                         resource_ids("P", "1.2", "1.3", "1.4"))

    def test_missing_patient_id_is_empty_string(self) -> None:
        ids = resource_ids(None, "1.2", "1.3", "1.4")
        self.assertEqual(ids.patient, orthanc_hash(""))
        self.assertEqual(ids.study, orthanc_hash("", "1.2"))

    def test_shape(self) -> None:
        value = orthanc_hash("x")
        self.assertTrue(looks_like_orthanc_id(value))
        self.assertEqual([len(p) for p in value.split("-")], [8] * 5)
        self.assertEqual(value, value.lower())
        self.assertFalse(looks_like_orthanc_id("1.2.3"))
