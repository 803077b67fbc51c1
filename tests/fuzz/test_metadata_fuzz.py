"""STOW-RS metadata readers: random JSON and XML trees, wrong types, depth."""

from __future__ import annotations

import contextlib
import io
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from dwdaemon.dicom import stow_model as sm
from tests.fuzz.support import PROFILE, counted

TAGS = ["00080016", "00080018", "0020000D", "0020000E", "00100010", "00100020", "00280010",
        "00280011", "00280100", "7FE00010", "00081199", "00020010", "0008103e", "zz", ""]
VRS = ["UI", "PN", "SQ", "US", "OB", "DS", "IS", "LO", "DA", "XX", "", None]
UIDS = ["1.2.840.10008.5.1.4.1.1.7", "1.2.3.4", "1.2.3.4.5", "", "not a uid"]

scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
           | st.text(max_size=20) | st.sampled_from(UIDS))
any_json = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.text(max_size=10) | st.sampled_from(TAGS), inner,
                                          max_size=4), max_leaves=30)


def attributes(inner: Any) -> Any:
    """DICOM-JSON-shaped attributes with random holes and wrong types."""
    return st.fixed_dictionaries({}, optional={
        "vr": st.sampled_from(VRS) | scalars,
        "Value": st.lists(inner | st.sampled_from(UIDS) | scalars, max_size=3) | scalars,
        "InlineBinary": st.text(max_size=12) | scalars,
        "BulkDataURI": st.sampled_from(["x", "cid:1", "/bulk/1", ""]) | scalars,
    }) | scalars


datasets = st.recursive(
    st.dictionaries(st.sampled_from(TAGS), attributes(scalars), max_size=8),
    lambda inner: st.dictionaries(st.sampled_from(TAGS), attributes(inner), max_size=8),
    max_leaves=20)


class MetadataPropertyTests(SynchronousTestCase):
    @PROFILE
    @given(any_json | datasets | st.lists(datasets, max_size=3))
    @counted
    def test_json_metadata_parts(self, doc: Any) -> None:
        """Any JSON document: a list of objects, or StowError."""
        try:
            data = json.dumps(doc).encode()
        except ValueError:
            return
        try:
            result = sm.metadata_datasets(sm.DICOM_JSON, data)
        except sm.StowError:
            return
        self.assertTrue(all(isinstance(d, dict) for d in result))

    @PROFILE
    @given(st.binary(max_size=500))
    @counted
    def test_json_bytes(self, data: bytes) -> None:
        for media in (sm.DICOM_JSON, sm.DICOM_XML):
            with contextlib.suppress(sm.StowError):
                sm.metadata_datasets(media, data)

    @PROFILE
    @given(st.integers(min_value=1, max_value=200000), st.sampled_from(["[", '{"a":', "<a>"]))
    @counted
    def test_depth(self, depth: int, opener: str) -> None:
        """Deep nesting is a StowError (no RecursionError)."""
        closer = {"[": "]", '{"a":': "}", "<a>": "</a>"}[opener]
        inner = "" if opener == "[" else "1"
        doc = (opener * depth + inner + closer * depth).encode()
        media = sm.DICOM_XML if opener == "<a>" else sm.DICOM_JSON
        with contextlib.suppress(sm.StowError):
            sm.metadata_datasets(media, doc)

    @PROFILE
    @given(datasets)
    @counted
    def test_assemble(self, dataset: dict[str, Any]) -> None:
        """Any metadata dataset: a Part 10 file, or StowError naming what is wrong."""
        out = io.BytesIO()
        try:
            sm.assemble_instance(dataset, sm.BulkIndex(), out)
        except sm.StowError as exc:
            self.assertTrue(str(exc))

    @PROFILE
    @given(st.recursive(
        st.builds(lambda t, a: (t, a), st.sampled_from(
            ["NativeDicomModel", "DicomAttribute", "Value", "PersonName", "Alphabetic",
             "FamilyName", "Item", "InlineBinary", "BulkData", "x"]),
            st.dictionaries(st.sampled_from(["tag", "vr", "number", "keyword", "uri"]),
                            st.text(alphabet="0123456789ABCDEFUIPNSQx.", max_size=9),
                            max_size=3)),
        lambda inner: st.builds(lambda t, ch: (t[0], t[1], ch), inner,
                                st.lists(inner | st.text(max_size=8), max_size=4)),
        max_leaves=25))
    @counted
    def test_xml_trees(self, tree: Any) -> None:
        """Random PS3.19-like XML trees: a dataset, or StowError."""
        from xml.sax.saxutils import escape, quoteattr

        def render(node: Any) -> str:
            if isinstance(node, str):
                return escape(node)
            name, attrs = node[0], node[1]
            children = node[2] if len(node) > 2 else []
            attr_text = "".join(f" {k}={quoteattr(v)}" for k, v in attrs.items())
            return f"<{name}{attr_text}>" + "".join(render(c) for c in children) + f"</{name}>"

        doc = render(("NativeDicomModel", {}, [tree])).encode()
        with contextlib.suppress(sm.StowError):
            sm.metadata_datasets(sm.DICOM_XML, doc)
