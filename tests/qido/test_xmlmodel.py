"""Round trips between DICOM JSON (PS3.18 F) and PS3.19 Native DICOM Model XML."""

from __future__ import annotations

import os
import warnings
import xml.etree.ElementTree as ET
from typing import Any

import pydicom
import pydicom.data
from twisted.trial.unittest import SynchronousTestCase

from dwdaemon.dicom.xmlmodel import (
    NATIVE_DICOM_NS,
    XmlModelError,
    dataset_json_to_xml,
    xml_to_dataset_json,
)

DATA_DIR = os.path.dirname(pydicom.data.__file__)
TEST_FILES = os.path.join(DATA_DIR, "test_files")
CHARSET_FILES = os.path.join(DATA_DIR, "charset_files")

ROUND_TRIP_FILES = [
    os.path.join(TEST_FILES, name)
    for name in (
        "CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "rtstruct.dcm", "test-SR.dcm",
        "nested_priv_SQ.dcm", "priv_SQ.dcm", "reportsi.dcm", "waveform_ecg.dcm",
        "rtdose.dcm", "examples_palette.dcm",
    )
] + [
    os.path.join(CHARSET_FILES, name)
    for name in sorted(os.listdir(CHARSET_FILES)) if name.endswith(".dcm")
]


def normalise(dataset: dict[str, Any]) -> dict[str, Any]:
    """Canonical DICOM JSON: upper-case tags, sorted, empty Value arrays dropped."""
    out: dict[str, Any] = {}
    for tag in sorted(dataset, key=str.upper):
        element = dict(dataset[tag])
        if element.get("Value") == []:
            del element["Value"]
        if element.get("vr") == "SQ" and "Value" in element:
            element["Value"] = [normalise(item or {}) for item in element["Value"]]
        out[tag.upper()] = element
    return out


def to_json(path: str) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path, force=True)
        return ds.to_json_dict(
            bulk_data_threshold=256,
            bulk_data_element_handler=lambda elem: f"http://h/bulk/{elem.tag:08X}",
        )


class RoundTripTests(SynchronousTestCase):
    """JSON -> XML -> JSON keeps every value."""

    def assertRoundTrip(self, dataset: dict[str, Any]) -> bytes:
        document = dataset_json_to_xml(dataset)
        self.assertEqual(normalise(xml_to_dataset_json(document)), normalise(dataset))
        return document

    def test_shipped_files(self) -> None:
        """Every selected pydicom file (charsets included) survives the round trip."""
        for path in ROUND_TRIP_FILES:
            try:
                self.assertRoundTrip(to_json(path))
            except Exception:
                self.fail(f"round trip failed for {os.path.basename(path)}")

    def test_person_name_groups(self) -> None:
        dataset = {
            "00100010": {"vr": "PN", "Value": [{
                "Alphabetic": "Yamada^Tarou",
                "Ideographic": "山田^太郎",
                "Phonetic": "やまだ^たろう",
            }]},
            "00081060": {"vr": "PN", "Value": [
                {"Alphabetic": "A^^C^^E"}, None, {"Alphabetic": "Solo"}, {},
            ]},
        }
        document = self.assertRoundTrip(dataset)
        root = ET.fromstring(document)
        ns = {"n": NATIVE_DICOM_NS}
        name = "n:DicomAttribute[@tag='00100010']/n:PersonName"
        family = root.find(f"{name}/n:Ideographic/n:FamilyName", ns)
        self.assertEqual(family.text, "山田")
        given = root.find(f"{name}/n:Alphabetic/n:GivenName", ns)
        self.assertEqual(given.text, "Tarou")
        others = root.findall("n:DicomAttribute[@tag='00081060']/n:PersonName", ns)
        numbers = [p.get("number") for p in others]
        self.assertEqual(numbers, ["1", "3", "4"])

    def test_numbers_and_types(self) -> None:
        dataset = {
            "00181050": {"vr": "DS", "Value": [1, 2.5, -0.001, 1e-07, 3.0]},
            "00200013": {"vr": "IS", "Value": [12, -3]},
            "00280010": {"vr": "US", "Value": [512]},
            "00186011": {"vr": "SQ", "Value": [{}, {"00186012": {"vr": "US", "Value": [1]}}]},
            "00189219": {"vr": "FD", "Value": [0.5]},
            "00209153": {"vr": "FD", "Value": [1.0e300]},
            "00209165": {"vr": "AT", "Value": ["00100010", "7FE00010"]},
            "00720066": {"vr": "SV", "Value": [-(2**62)]},
            "00720068": {"vr": "UV", "Value": [2**63]},
            "00080016": {"vr": "UI", "Value": ["1.2.3"]},
            "00200032": {"vr": "DS", "Value": [None, 1]},
        }
        result = xml_to_dataset_json(self.assertRoundTrip(dataset))
        self.assertIsInstance(result["00181050"]["Value"][0], int)
        self.assertIsInstance(result["00181050"]["Value"][4], float)
        self.assertEqual(result["00720068"]["Value"], [2**63])
        self.assertEqual(result["00200032"]["Value"], [None, 1])

    def test_binary(self) -> None:
        dataset = {
            "00091010": {"vr": "OB", "InlineBinary": "AAECAw=="},
            "7FE00010": {"vr": "OW", "BulkDataURI": "http://h/studies/1/bulk/7FE00010?a=1&b=2"},
            "00080050": {"vr": "SH"},
        }
        document = self.assertRoundTrip(dataset)
        self.assertIn(b'uri="http://h/studies/1/bulk/7FE00010?a=1&amp;b=2"', document)

    def test_escaping(self) -> None:
        dataset = {"00081030": {"vr": "LO", "Value": ['<a & "b"> \u00e9']},
                   "00324000": {"vr": "LT", "Value": ["line1\r\nline2\tx  "]}}
        self.assertRoundTrip(dataset)

    def test_private_creator_and_keyword(self) -> None:
        dataset = {
            "00090010": {"vr": "LO", "Value": ["ACME 1.1"]},
            "00091001": {"vr": "LO", "Value": ["x"]},
            "00100020": {"vr": "LO", "Value": ["ID"]},
        }
        root = ET.fromstring(dataset_json_to_xml(dataset))
        attrs = {a.get("tag"): a.attrib for a in root}
        self.assertEqual(attrs["00091001"].get("privateCreator"), "ACME 1.1")
        self.assertEqual(attrs["00100020"].get("keyword"), "PatientID")
        self.assertNotIn("keyword", attrs["00091001"])

    def test_document_shape(self) -> None:
        document = dataset_json_to_xml({})
        self.assertTrue(document.startswith(b'<?xml version="1.0" encoding="UTF-8"?>'))
        root = ET.fromstring(document)
        self.assertEqual(root.tag, f"{{{NATIVE_DICOM_NS}}}NativeDicomModel")
        self.assertEqual(xml_to_dataset_json(document), {})

    def test_reads_without_namespace(self) -> None:
        document = (
            b'<NativeDicomModel><DicomAttribute tag="00100010" vr="PN">'
            b'<PersonName number="1"><Alphabetic><FamilyName>Doe</FamilyName>'
            b"<GivenName>J</GivenName></Alphabetic></PersonName></DicomAttribute>"
            b'<DicomAttribute tag="00200013" vr="IS"><Value number="1">7</Value></DicomAttribute>'
            b"</NativeDicomModel>"
        )
        self.assertEqual(xml_to_dataset_json(document), {
            "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^J"}]},
            "00200013": {"vr": "IS", "Value": [7]},
        })


class ErrorTests(SynchronousTestCase):
    """Malformed documents raise XmlModelError, never anything else."""

    def test_errors(self) -> None:
        bad = [
            b"not xml",
            b"<Other/>",
            b'<NativeDicomModel><DicomAttribute tag="zz" vr="LO"/></NativeDicomModel>',
            b'<NativeDicomModel><DicomAttribute tag="00200013" vr="IS">'
            b'<Value number="1">x</Value></DicomAttribute></NativeDicomModel>',
            b'<NativeDicomModel><DicomAttribute tag="00200013" vr="IS">'
            b'<Value>1</Value></DicomAttribute></NativeDicomModel>',
            b'<NativeDicomModel><DicomAttribute tag="00200013" vr="IS">'
            b'<Value number="0">1</Value></DicomAttribute></NativeDicomModel>',
            b'<NativeDicomModel><Junk/></NativeDicomModel>',
            b'<!DOCTYPE x [<!ENTITY a "aaaa">]><NativeDicomModel/>',
        ]
        for document in bad:
            self.assertRaises(XmlModelError, xml_to_dataset_json, document)
        self.assertRaises(XmlModelError, dataset_json_to_xml, {"bad": {"vr": "LO"}})

