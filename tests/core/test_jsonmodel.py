"""The JSON model: the fast raw-bytes path must equal pydicom's conversion everywhere."""

from __future__ import annotations

import json
import warnings

from pydicom import dcmread
from twisted.trial.unittest import SynchronousTestCase

import dwdaemon.dicom.jsonmodel as jsonmodel
from dwdaemon.dicom.fastjson import plain_codec, raw_to_json
from tests.support import charset_files, shipped_files


class FastPathTests(SynchronousTestCase):
    def setUp(self) -> None:
        warnings.simplefilter("ignore")
        self.addCleanup(warnings.resetwarnings)

    def test_fast_path_equals_pydicom_on_the_corpus(self) -> None:
        compared = 0
        for path in shipped_files() + charset_files():
            try:
                fast = jsonmodel.dataset_to_json(dcmread(path, defer_size=1024))
            except Exception:  # files pydicom cannot read at all
                continue
            original = jsonmodel.FAST_VRS
            jsonmodel.FAST_VRS = frozenset()
            try:
                slow = jsonmodel.dataset_to_json(dcmread(path, defer_size=1024))
            finally:
                jsonmodel.FAST_VRS = original
            self.assertEqual(json.dumps(fast.dataset, sort_keys=True),
                             json.dumps(slow.dataset, sort_keys=True), path)
            self.assertEqual(fast.bulk, slow.bulk, path)
            compared += 1
        self.assertGreater(compared, 80)

    def test_values(self) -> None:
        self.assertEqual(raw_to_json("DS", b" 1.5\\-2 ", True, "latin-1"),
                         {"vr": "DS", "Value": [1.5, -2.0]})
        self.assertEqual(raw_to_json("IS", b"12 ", True, "latin-1"),
                         {"vr": "IS", "Value": [12]})
        self.assertIsNone(raw_to_json("IS", b"1A", True, "latin-1"))
        self.assertEqual(raw_to_json("US", b"\x01\x00\x02\x00", True, None),
                         {"vr": "US", "Value": [1, 2]})
        self.assertEqual(raw_to_json("US", b"\x00\x01", False, None),
                         {"vr": "US", "Value": [1]})
        self.assertEqual(raw_to_json("PN", "Buc^Jérôme".encode("latin-1"), True, "latin-1"),
                         {"vr": "PN", "Value": [{"Alphabetic": "Buc^Jérôme"}]})
        self.assertIsNone(raw_to_json("PN", b"A^B=C^D", True, "latin-1"))
        self.assertEqual(raw_to_json("AT", b"\x10\x00\x10\x00", True, None),
                         {"vr": "AT", "Value": ["00100010"]})
        self.assertEqual(raw_to_json("CS", b"", True, "latin-1"), {"vr": "CS"})
        self.assertEqual(plain_codec(["iso8859"]), "latin-1")
        self.assertIsNone(plain_codec(["iso2022_jp", "iso8859"]))


    def test_stored_text_is_strict_json(self) -> None:
        """The text stored for a dataset is valid JSON: NaN and infinite FD values (JSON has
        no such numbers) become null; non-ASCII text stays UTF-8; integers beyond 64 bits are
        kept."""
        from pydicom.dataset import Dataset

        ds = Dataset()
        ds.add_new(0x00181050, "FD", [float("nan"), float("inf"), 1.5])
        ds.PatientName = "Buc^Jérôme"
        text = jsonmodel.dumps(jsonmodel.dataset_to_json(ds).dataset)

        def refuse(constant: str) -> None:
            raise ValueError(constant)

        parsed = json.loads(text, parse_constant=refuse)
        self.assertEqual(parsed["00181050"]["Value"], [None, None, 1.5])
        self.assertIn("Jérôme", text)
        self.assertEqual(json.loads(jsonmodel.dumps({"x": {"Value": [2**70]}})),
                         {"x": {"Value": [2**70]}})
