"""QIDO-RS parameters: random keys, values, ranges and encodings, parsed then matched."""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from dwdaemon.dicom.matching import QueryError, parse_query
from tests.fuzz.support import PROFILE, counted

KEYS = ["PatientName", "PatientID", "StudyDate", "StudyTime", "AcquisitionDateTime",
        "Modality", "ModalitiesInStudy", "StudyInstanceUID", "SeriesNumber", "InstanceNumber",
        "00100010", "00080020", "0020000D", "PatientWeight", "PixelData", "00081199",
        "ReferencedStudySequence.ReferencedSOPInstanceUID", "00081110.00081155",
        "limit", "offset", "fuzzymatching", "includefield", "LIMIT", "NoSuchKeyword",
        "1234567", "zzzzzzzz", "", ".", "PatientName.", "a.b.c"]
PIECES = ["", "*", "?", "-", ",", "\\", "^", "=", "20200101", "2020", "0930", "093015.123",
          "20200101-20201231", "-20200101", "20201231-", "20200101120000+0100", "1.2.3",
          "1.2.840.10008", "12", "-3", "1e3", "true", "false", "all", "Doe^J*", "山田^太郎",
          "%", "_", "[a]", "NaN", "inf", "\x00", " ", "0", "99999999999999999999"]

values = (st.lists(st.sampled_from(PIECES), max_size=4).map("".join)
          | st.text(max_size=30))
params = st.lists(st.tuples(st.sampled_from(KEYS) | st.text(max_size=12), values), max_size=6)

element_values = st.lists(st.none() | st.integers() | st.floats() | st.text(max_size=12)
                          | st.fixed_dictionaries({}, optional={
                              "Alphabetic": st.text(max_size=10),
                              "Ideographic": st.text(max_size=5) | st.integers()})
                          | st.dictionaries(st.sampled_from(["00081155", "00100010"]),
                                            st.just({"vr": "UI", "Value": ["1.2.3"]})),
                          max_size=3)
datasets = st.dictionaries(
    st.sampled_from(["00100010", "00100020", "00080020", "00080030", "0008002A", "00080060",
                     "00080061", "0020000D", "00200011", "00200013", "00101030", "00081110",
                     "00081199"]),
    st.fixed_dictionaries({"vr": st.sampled_from(["PN", "LO", "DA", "TM", "DT", "CS", "UI",
                                                   "IS", "DS", "SQ"])},
                          optional={"Value": element_values}) | st.none() | st.integers(),
    max_size=6)


class QueryPropertyTests(SynchronousTestCase):
    @PROFILE
    @given(params, st.booleans(), st.lists(datasets, max_size=3))
    @counted
    def test_parse_and_match(self, items: list[tuple[str, str]], case_sensitive: bool,
                             stored: list[dict[str, Any]]) -> None:
        """Any parameters: a query (or QueryError naming a parameter); matching never fails."""
        try:
            query = parse_query(items, case_sensitive=case_sensitive)
        except QueryError as exc:
            self.assertTrue(str(exc))
            return
        self.assertTrue(query.limit is None or query.limit > 0)
        self.assertGreaterEqual(query.offset, 0)
        for dataset in stored:
            for criterion in query.criteria:
                self.assertIn(criterion.matches(dataset), (True, False))


class _Request:
    def __init__(self, uri: bytes) -> None:
        self.uri = uri


RAW = ["%", "%2", "%ff", "%c0%ae", "%e5%b1%b1", "+", "&", "=", ";", "#", "?", "PatientName",
       "StudyDate", "limit", "20200101-", "%2B", "%00", "a", "*", "\\", "%5C", "%%", "é"]


class QueryStringPropertyTests(SynchronousTestCase):
    @PROFILE
    @given(st.lists(st.sampled_from(RAW), max_size=12).map("".join)
           | st.binary(max_size=60).map(lambda b: b.decode("latin-1")))
    @counted
    def test_raw_query_strings(self, raw: str) -> None:
        """Any query string: parameters, or a 400 naming the encoding problem."""
        from dwdaemon.web.errors import ApiError
        from dwdaemon.web.query import query_items

        uri = ("/dicom-web/studies?" + raw).encode("latin-1")
        try:
            pairs = query_items(_Request(uri), strict=True)  # type: ignore[arg-type]
        except ApiError as exc:
            self.assertEqual(exc.status, 400)
            return
        with contextlib.suppress(QueryError):
            parse_query(pairs)
