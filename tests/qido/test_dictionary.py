"""Orthanc's ``Dictionary`` and ``DefaultPrivateCreator``: configured private and additional tags
get their VR in implicit-VR files and are usable as QIDO-RS keys and ``includefield``."""

from __future__ import annotations

import io
import json
from typing import Any

import pydicom
from pydicom.uid import ImplicitVRLittleEndian
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from dwdaemon.config import DictionaryEntry
from dwdaemon.dicom.qido_model import private_creator_of
from tests.qido.data import instance
from tests.support import start_daemon

STUDY = "1.2.826.0.1.3680043.8.498.88"
SERIES = STUDY + ".1"
SOP = SERIES + ".1"
DICTIONARY = (
    DictionaryEntry(0x00D90010, "LO", "Private data element", 1, 1, "Acme"),
    DictionaryEntry(0x00D91001, "DS", "Dwd abnormality score", 1, 1, None),  # default creator
    DictionaryEntry(0x00F20010, "LO", "DwdTestTag", 1, 0, None),  # an additional public tag
)


def implicit_file() -> bytes:
    """An implicit VR file whose private and additional tags have no VR without the dictionary."""
    ds = pydicom.dcmread(io.BytesIO(instance(SOP, STUDY, SERIES, PatientID="P",
                                             PatientName="Doe^Jane", StudyDate="20240101")))
    ds.add_new(0x00D90010, "LO", "Acme")
    ds.add_new(0x00D91001, "DS", "98.41")
    ds.add_new(0x00F20010, "LO", "hello")
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    out = io.BytesIO()
    ds.save_as(out, implicit_vr=True, little_endian=True)
    return out.getvalue()


class DictionaryTests(TestCase):
    @inlineCallbacks
    def setUp(self) -> Any:
        self.daemon = start_daemon(self, dictionary=DICTIONARY, default_private_creator="Acme")
        yield self.daemon.store.ingest_bytes(implicit_file())

    @inlineCallbacks
    def studies(self, query: str) -> Any:
        response, body = yield self.daemon.request("GET", "/dicom-web/studies?" + query)
        self.assertEqual(response.code, 200, query)
        return json.loads(body)

    @inlineCallbacks
    def test_includefield_private(self) -> Any:
        plain = yield self.studies("")
        self.assertNotIn("00D91001", plain[0])
        self.assertNotIn("00D90010", plain[0])
        answer = yield self.studies("includefield=00D91001")
        self.assertEqual(answer[0]["00D91001"], {"vr": "DS", "Value": [98.41]})
        # PS3.18 10.6.3.3: an included private element comes with its Private Creator
        # (Orthanc's test_bitbucket_issue_168 expects it left out)
        self.assertEqual(answer[0]["00D90010"], {"vr": "LO", "Value": ["Acme"]})
        answer = yield self.studies("includefield=DwdAbnormalityScore")
        self.assertEqual(answer[0]["00D91001"]["Value"], [98.41])

    @inlineCallbacks
    def test_matching_private(self) -> Any:
        for query, count in [("00D91001=98.41", 1), ("00D91001=98.410", 1), ("00D91001=1", 0),
                             ("00D90010=Acme&includefield=00D91001", 1),
                             ("00D90010=Other&includefield=00D91001", 0),
                             ("00D90010=Ac*", 1)]:
            answer = yield self.studies(query)
            self.assertEqual(len(answer), count, query)

    @inlineCallbacks
    def test_additional_public_tag(self) -> Any:
        answer = yield self.studies("includefield=DwdTestTag")
        self.assertEqual(answer[0]["00F20010"], {"vr": "LO", "Value": ["hello"]})
        answer = yield self.studies("DwdTestTag=hel*")
        self.assertEqual(len(answer), 1)
        answer = yield self.studies("00F20010=nope")
        self.assertEqual(answer, [])

    @inlineCallbacks
    def test_metadata_vrs(self) -> Any:
        _, body = yield self.daemon.request(
            "GET", f"/dicom-web/studies/{STUDY}/series/{SERIES}/instances/{SOP}/metadata")
        metadata = json.loads(body)[0]
        self.assertEqual(metadata["00D91001"], {"vr": "DS", "Value": [98.41]})
        self.assertEqual(metadata["00F20010"], {"vr": "LO", "Value": ["hello"]})

    def test_private_creator_of(self) -> None:
        self.assertEqual(private_creator_of("00D91001"), "00D90010")
        self.assertEqual(private_creator_of("0029A0FF"), "002900A0")
        self.assertIsNone(private_creator_of("00D90010"))
        self.assertIsNone(private_creator_of("00100010"))


class ConfigKeyTests(TestCase):
    """The Orthanc keys ``Dictionary``, ``DefaultPrivateCreator``, ``DefaultEncoding`` and
    ``CaseSensitivePN`` as a configuration file spells them."""

    def test_parse(self) -> None:
        from dwdaemon.config import Config, ConfigError, parse_config

        config, warnings = parse_config(
            '{"Dictionary": {"0009,1001": ["DS", "Abnormality score", 1, 1, "Lunit"],'
            ' "0009,0010": ["LO", "Private data element", 1, 1, "Lunit"],'
            ' "00F2,0010": ["lo", "DwdTestTag"]},'
            ' "DefaultPrivateCreator": "Lunit", "DefaultEncoding": "utf8",'
            ' "CaseSensitivePN": true}')
        self.assertEqual(warnings, [])
        self.assertEqual(config.dictionary[0], DictionaryEntry(0x00091001, "DS",
                                                               "Abnormality score", 1, 1,
                                                               "Lunit"))
        self.assertEqual(config.dictionary[2], DictionaryEntry(0x00F20010, "LO", "DwdTestTag"))
        self.assertEqual((config.default_private_creator, config.default_encoding,
                          config.case_sensitive_pn), ("Lunit", "Utf8", True))
        defaults = Config()
        self.assertEqual((defaults.default_encoding, defaults.case_sensitive_pn,
                          defaults.dictionary), ("Latin1", False, ()))
        for bad, key in [('{"DefaultEncoding": "Klingon"}', "DefaultEncoding"),
                         ('{"Dictionary": {"0009": ["DS", "x"]}}', "Dictionary.0009"),
                         ('{"Dictionary": {"0009,1001": ["XX", "x"]}}', "Dictionary.0009,1001"),
                         ('{"Dictionary": {"0009,1001": "DS"}}', "Dictionary.0009,1001"),
                         ('{"CaseSensitivePN": 1}', "CaseSensitivePN")]:
            with self.assertRaises(ConfigError) as caught:
                parse_config(bad)
            self.assertIn(key, str(caught.exception))
