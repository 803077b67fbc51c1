"""QIDO-RS query parsing and the pure matching evaluator (PS3.4 C.2.2.2)."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from dwdaemon.dicom.matching import (
    Query,
    QueryError,
    fold,
    fuzzy_words,
    parse_query,
)

DATASET: dict[str, Any] = {
    "00080020": {"vr": "DA", "Value": ["20240115"]},
    "00080030": {"vr": "TM", "Value": ["093015.5"]},
    "0008002A": {"vr": "DT", "Value": ["20240115093015+0100"]},
    "00080050": {"vr": "SH", "Value": ["ACC-1"]},
    "00080060": {"vr": "CS", "Value": ["MR"]},
    "00080061": {"vr": "CS", "Value": ["CT", "SR"]},
    "00081030": {"vr": "LO", "Value": ["Brain w/o contrast"]},
    "00081110": {"vr": "SQ", "Value": [
        {"00081150": {"vr": "UI", "Value": ["1.2.840.10008.3.1.2.3.1"]},
         "00081155": {"vr": "UI", "Value": ["1.2.3.4"]}},
        {"00081155": {"vr": "UI", "Value": ["1.2.3.5"]}},
    ]},
    "00100010": {"vr": "PN", "Value": [{
        "Alphabetic": "Müller^José^^Dr.", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう",
    }]},
    "00100020": {"vr": "LO", "Value": ["PID-7"]},
    "00100030": {"vr": "DA", "Value": ["19700101"]},
    "0020000D": {"vr": "UI", "Value": ["1.2.3"]},
    "00200013": {"vr": "IS", "Value": [7]},
    "00180050": {"vr": "DS", "Value": [2.5]},
    "00280010": {"vr": "US", "Value": [512]},
    "00101010": {"vr": "AS", "Value": ["054Y"]},
}


def q(*pairs: tuple[str, str], case_sensitive: bool = True) -> Query:
    return parse_query(pairs, case_sensitive=case_sensitive)


def matches(*pairs: tuple[str, str], case_sensitive: bool = True,
            dataset: dict[str, Any] = DATASET) -> bool:
    query = q(*pairs, case_sensitive=case_sensitive)
    return all(c.matches(dataset) for c in query.criteria)


class KeyTests(SynchronousTestCase):
    def test_keyword_and_tag(self) -> None:
        self.assertEqual(q(("PatientID", "x")).criteria[0].path, ("00100020",))
        self.assertEqual(q(("00100020", "x")).criteria[0].path, ("00100020",))
        self.assertEqual(q(("0020000d", "1.2")).criteria[0].path, ("0020000D",))

    def test_unknown_key_warns(self) -> None:
        query = q(("NoSuchKeyword", "x"), ("_", "123"), ("FFFF0000", "y"), ("00100009", "z"))
        self.assertEqual(query.criteria, [])
        self.assertEqual(len(query.warnings), 4)
        self.assertIn("NoSuchKeyword", query.warnings[0])

    def test_private_tag_kept(self) -> None:
        query = q(("00091001", "abc"))
        self.assertEqual(query.criteria[0].path, ("00091001",))

    def test_sequence_path(self) -> None:
        query = q(("ReferencedStudySequence.ReferencedSOPInstanceUID", "1.2.3.5"))
        self.assertEqual(query.criteria[0].path, ("00081110", "00081155"))
        self.assertTrue(all(c.matches(DATASET) for c in query.criteria))
        self.assertFalse(matches(("00081110.00081155", "1.2.3.6")))
        self.assertTrue(matches(("00081110.00081155", "1.2.3.6,1.2.3.4")))

    def test_nested_key_on_non_sequence(self) -> None:
        err = self.assertRaises(QueryError, q, ("PatientName.PatientID", "x"))
        self.assertEqual(err.param, "PatientName.PatientID")

    def test_reserved(self) -> None:
        query = q(("limit", "10"), ("offset", "5"), ("includefield", "StudyDescription,00081030"),
                  ("includefield", "all"), ("fuzzymatching", "true"))
        self.assertEqual((query.limit, query.offset, query.fuzzy), (10, 5, True))
        self.assertEqual(query.includefields, ["00081030"])
        self.assertTrue(query.include_all)
        self.assertEqual(q(("limit", "0")).limit, None)
        self.assertEqual(q(("offset", "9" * 30)).offset, 2**53)

    def test_includefield_unknown_warns(self) -> None:
        query = q(("includefield", "Bogus"))
        self.assertEqual(query.includefields, [])
        self.assertEqual(len(query.warnings), 1)


class ErrorTests(SynchronousTestCase):
    CASES = [
        ("limit", "-1"), ("limit", "ten"), ("offset", "-3"), ("offset", "1.5"),
        ("StudyDate", "2024-01-15"), ("StudyDate", "20241301"), ("StudyDate", "2024011"),
        ("StudyDate", "20240201-20240101"), ("StudyDate", "abc-"), ("StudyDate", "2024*"),
        ("StudyTime", "2500"), ("StudyTime", "12:00"), ("StudyTime", "1261"),
        ("AcquisitionDateTime", "2024011512x"), ("StudyInstanceUID", "1.2.abc"),
        ("StudyInstanceUID", "1.2.*"), ("InstanceNumber", "seven"), ("InstanceNumber", "7*"),
        ("SliceThickness", "thick"), ("PatientAge", "54"), ("ReferencedStudySequence", "x"),
        ("PixelData", "x"), ("fuzzymatching", "maybe"), ("Modality", "CT,M*"),
    ]

    def test_each_error_names_the_parameter(self) -> None:
        for key, value in self.CASES:
            try:
                q((key, value))
            except QueryError as exc:
                self.assertEqual(exc.param, key)
                self.assertIn(key, str(exc))
            else:
                self.fail(f"{key}={value} accepted")


class RuleTests(SynchronousTestCase):
    def test_universal(self) -> None:
        query = q(("PatientName", ""), ("StudyDate", ""), ("Modality", "*"))
        self.assertEqual([c.kind for c in query.criteria], ["universal"] * 3)
        self.assertTrue(matches(("AccessionNumber", ""), dataset={}))
        self.assertEqual(query.matching_tags(), ["00100010", "00080020", "00080060"])

    def test_single_value(self) -> None:
        self.assertTrue(matches(("PatientID", "PID-7")))
        self.assertFalse(matches(("PatientID", "PID-")))
        self.assertFalse(matches(("PatientID", "pid-7")))
        self.assertTrue(matches(("StudyDate", "20240115")))
        self.assertFalse(matches(("StudyDate", "20240116")))
        self.assertTrue(matches(("InstanceNumber", "7")))
        self.assertTrue(matches(("InstanceNumber", "+7")))
        self.assertTrue(matches(("SliceThickness", "2.50")))
        self.assertTrue(matches(("Rows", "512")))
        self.assertTrue(matches(("PatientAge", "054Y")))
        self.assertTrue(matches(("ModalitiesInStudy", "SR")))  # any value of a multi-valued attr
        self.assertFalse(matches(("StudyDescription", "Brain")))

    def test_single_time_is_a_prefix_range(self) -> None:
        self.assertTrue(matches(("StudyTime", "0930")))
        self.assertTrue(matches(("StudyTime", "093015")))
        self.assertFalse(matches(("StudyTime", "0931")))

    def test_uid_list(self) -> None:
        self.assertTrue(matches(("StudyInstanceUID", "9.9,1.2.3")))
        self.assertTrue(matches(("StudyInstanceUID", "9.9\\1.2.3")))
        self.assertFalse(matches(("StudyInstanceUID", "9.9,1.2.33")))
        self.assertTrue(matches(("ModalitiesInStudy", "MR,CT")))
        self.assertTrue(matches(("Modality", "CT\\MR")))
        self.assertFalse(matches(("Modality", "CT\\US")))

    def test_wildcards(self) -> None:
        self.assertTrue(matches(("PatientName", "Mül*")))
        self.assertTrue(matches(("PatientName", "M?ller*")))
        self.assertTrue(matches(("PatientName", "*José*")))
        self.assertTrue(matches(("PatientName", "山田*")))
        self.assertFalse(matches(("PatientName", "mül*")))
        self.assertTrue(matches(("StudyDescription", "Brain*")))
        self.assertTrue(matches(("StudyDescription", "*w/o*")))
        self.assertFalse(matches(("StudyDescription", "Brain?")))
        self.assertTrue(matches(("Modality", "M?")))
        self.assertTrue(matches(("PatientID", "PID-?")))
        self.assertTrue(matches(("AccessionNumber", "*-1")))
        # regex metacharacters are literal
        self.assertFalse(matches(("StudyDescription", "Brain.*")))

    def test_person_name_groups(self) -> None:
        self.assertTrue(matches(("PatientName", "Müller^José^^Dr.")))
        self.assertTrue(matches(("PatientName", "Müller^José^^Dr.^^")))
        self.assertTrue(matches(("PatientName", "山田^太郎")))
        self.assertTrue(matches(("PatientName", "やまだ^たろう")))
        self.assertTrue(matches(("PatientName", "Müller^José^^Dr.=山田^太郎=やまだ^たろう")))
        self.assertFalse(matches(("PatientName", "Müller")))

    def test_ranges(self) -> None:
        self.assertTrue(matches(("StudyDate", "20240101-20240131")))
        self.assertTrue(matches(("StudyDate", "20240115-")))
        self.assertTrue(matches(("StudyDate", "-20240115")))
        self.assertFalse(matches(("StudyDate", "20240116-")))
        self.assertFalse(matches(("StudyDate", "-20240114")))
        self.assertTrue(matches(("StudyDate", "-")))
        self.assertTrue(matches(("StudyTime", "09-10")))
        self.assertTrue(matches(("StudyTime", "-0930")))
        self.assertFalse(matches(("StudyTime", "-0929")))
        self.assertTrue(matches(("StudyTime", "093015.5-")))
        self.assertFalse(matches(("StudyTime", "0931-")))
        self.assertTrue(matches(("AcquisitionDateTime", "2024-2024")))
        self.assertTrue(matches(("AcquisitionDateTime", "20240115093000-20240115094000")))
        self.assertTrue(matches(("AcquisitionDateTime", "20240115+0100-")))
        self.assertFalse(matches(("AcquisitionDateTime", "-20240114")))
        self.assertTrue(matches(("AcquisitionDateTime", "2024011509")))

    def test_case_insensitive(self) -> None:
        self.assertTrue(matches(("PatientName", "müller*"), case_sensitive=False))
        self.assertTrue(matches(("PatientName", "MÜLLER^JOSÉ^^DR."), case_sensitive=False))
        self.assertTrue(matches(("PatientID", "pid-7"), case_sensitive=False))
        self.assertTrue(matches(("StudyDescription", "brain*"), case_sensitive=False))
        self.assertTrue(matches(("Modality", "mr"), case_sensitive=False))
        self.assertTrue(matches(("Modality", "m*"), case_sensitive=False))
        self.assertFalse(matches(("PatientName", "muller*"), case_sensitive=False))

    def test_fuzzy(self) -> None:
        f = ("fuzzymatching", "true")
        self.assertTrue(matches(f, ("PatientName", "muller")))
        self.assertTrue(matches(f, ("PatientName", "MUL")))
        self.assertTrue(matches(f, ("PatientName", "jose muller")))
        self.assertTrue(matches(f, ("PatientName", "jo^mu")))
        self.assertTrue(matches(f, ("PatientName", "山田")))
        self.assertTrue(matches(f, ("PatientName", "m?ll")))
        self.assertFalse(matches(f, ("PatientName", "ose")))
        self.assertFalse(matches(f, ("PatientName", "jose smith")))
        self.assertFalse(matches(("PatientName", "muller")))

    def test_fold(self) -> None:
        self.assertEqual(fold("ÉCOLE Ångström"), "ecole angstrom")
        self.assertEqual(fuzzy_words("Müller-Lüdenscheidt^Hans=山田^太郎"),
                         ["muller", "ludenscheidt", "hans", "山田", "太郎"])
