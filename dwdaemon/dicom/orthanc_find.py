"""Orthanc's ``/tools/find`` (pure logic): parse the request, match Orthanc main DICOM tags, and
shape expanded answers (``Full``/``Short``).

Matching follows Orthanc's lookups (the C-FIND rules of PS3.4 C.2.2.2): an empty value or ``*``
matches everything; ``\\`` separates values of which one must match; ``*`` and ``?`` are
wildcards (not for UIDs); ``a-b``, ``a-`` and ``-b`` are inclusive ranges for dates and times;
anything else is an exact match. Person names compare case- and accent-insensitively unless
``CaseSensitive`` (default: the ``CaseSensitivePN`` option) is true.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from dwdaemon.dicom.maintags import LEVEL_TAGS, element_text
from dwdaemon.dicom.matching import fold, wildcard_regex

#: Level names of the request (Orthanc accepts these, any case) -> our level names.
LEVELS = {"patient": "patients", "study": "studies", "series": "series",
          "instance": "instances", "patients": "patients", "studies": "studies",
          "instances": "instances"}
RANGE_VRS = ("DA", "DT", "TM")
#: Main tags with an index column (exact matches on them select candidates in SQL).
IDENTIFIERS = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
_TAG_FORMS = (re.compile(r"([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})"), re.compile(r"([0-9A-Fa-f]{4})"
                                                                        r"([0-9A-Fa-f]{4})"))


class FindError(ValueError):
    """A malformed ``/tools/find`` request (answered 400)."""


@dataclass
class Constraint:
    """One ``Query`` member: a main DICOM tag (keyword) and its test."""

    keyword: str
    test: Callable[[str | None], bool]
    main: bool = True  # a main tag of the level or a parent (else read from an instance)
    exact: str | None = None  # the value, when the test is a plain exact match


@dataclass
class FindRequest:
    """A parsed ``/tools/find`` body."""

    level: str
    constraints: list[Constraint] = field(default_factory=list)
    expand: bool = False
    full: bool = False
    short: bool = False
    limit: int = 0
    since: int = 0

    def exact_identifiers(self) -> dict[str, str]:
        """Identifier keywords (PatientID and the UIDs) asked with one exact value: the index
        finds their candidates by its columns instead of reading every resource."""
        return {c.keyword: c.exact for c in self.constraints
                if c.exact is not None and c.keyword in IDENTIFIERS}

    def matches(self, tags: Mapping[str, str]) -> bool:
        """Whether main tags (the resource's and its ancestors', by keyword) match the
        constraints on main tags."""
        return all(c.test(tags.get(c.keyword)) for c in self.constraints if c.main)

    @property
    def needs_dataset(self) -> bool:
        """Whether some constraint is on another attribute (matched on an instance's data
        set, as Orthanc reads one of the resource's instances)."""
        return any(not c.main for c in self.constraints)

    def matches_dataset(self, dataset: Mapping[str, Any]) -> bool:
        """Whether an instance's DICOM JSON matches the constraints on other attributes."""
        data = dict(dataset)
        return all(c.test(element_text(data, f"{tag_for_keyword(c.keyword):08X}"))
                   for c in self.constraints if not c.main)


def keyword_of(name: str) -> str:
    """``PatientName``, ``0010,0010`` or ``00100010`` -> ``PatientName``."""
    for form in _TAG_FORMS:
        m = form.fullmatch(name.strip())
        if m:
            keyword = keyword_for_tag(int(m.group(1) + m.group(2), 16))
            if not keyword:
                raise FindError(f"Query: unknown tag {name!r}")
            return keyword
    if tag_for_keyword(name.strip()) is None:
        raise FindError(f"Query: unknown attribute {name!r}")
    return name.strip()


def _vr(keyword: str) -> str:
    try:
        return dictionary_VR(tag_for_keyword(keyword)).split(" or ")[0]
    except (KeyError, TypeError):
        return "LO"


def make_test(keyword: str, pattern: str, case_sensitive: bool) -> Callable[[str | None], bool]:
    """The test of one query value against a main tag's text (``None`` when absent)."""
    vr = _vr(keyword)
    fold_case = vr == "PN" and not case_sensitive
    norm: Callable[[str], str] = fold if fold_case else (lambda t: t)
    pattern = pattern.strip()
    if pattern in ("", "*"):
        return lambda value: True
    if "\\" in pattern:
        alternatives = [make_test(keyword, p, case_sensitive) for p in pattern.split("\\")]
        return lambda value: any(t(value) for t in alternatives)
    if vr in RANGE_VRS and "-" in pattern and pattern.count("-") == 1:
        low, high = (p.strip() for p in pattern.split("-"))

        def in_range(value: str | None) -> bool:
            if not value:
                return False
            text = value.strip()
            if low and text < low:
                return False
            return not (high and text[:len(high)] > high)

        return in_range
    if vr != "UI" and ("*" in pattern or "?" in pattern):
        regex = wildcard_regex(norm(pattern))
        return lambda value: value is not None and regex.fullmatch(norm(value.strip())) is not None
    wanted = norm(pattern)
    return lambda value: value is not None and norm(value.strip()) == wanted


def _bool(body: Mapping[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise FindError(f'Field "{key}" must be true or false')
    return value


def _count(body: Mapping[str, Any], key: str) -> int:
    value = body.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise FindError(f'Field "{key}" must be a non-negative integer')
    return value


def parse_find(body: Any, case_sensitive_pn: bool = False) -> FindRequest:
    """Validate a ``/tools/find`` body (Orthanc's field names and messages)."""
    if not isinstance(body, dict):
        raise FindError("the body must be a JSON object")
    level = body.get("Level")
    if not isinstance(level, str) or level.lower() not in LEVELS:
        raise FindError('Field "Level" is missing, or should be a string '
                        "(Patient, Study, Series or Instance)")
    query = body.get("Query")
    if not isinstance(query, dict):
        raise FindError('Field "Query" is missing, or should be a JSON object')
    case_sensitive = _bool(body, "CaseSensitive", case_sensitive_pn)
    request = FindRequest(level=LEVELS[level.lower()], expand=_bool(body, "Expand", False),
                          full=_bool(body, "Full", False), short=_bool(body, "Short", False),
                          limit=_count(body, "Limit"), since=_count(body, "Since"))
    # A main tag of any level is looked for in the main tags only (a series tag never matches
    # at the study level, as in Orthanc); other attributes are read from an instance.
    main = {kw for tags in LEVEL_TAGS.values() for kw in tags}
    for name, pattern in query.items():
        if not isinstance(pattern, str):
            raise FindError(f"Query: the value of {name!r} must be a string")
        keyword = keyword_of(name)
        plain = pattern.strip()
        exact = plain if plain and not any(c in plain for c in "*?\\-") else None
        request.constraints.append(Constraint(keyword, make_test(keyword, pattern,
                                                                 case_sensitive),
                                              main=keyword in main, exact=exact))
    return request


def _tag_key(keyword: str) -> str:
    tag = tag_for_keyword(keyword)
    return f"{tag >> 16:04x},{tag & 0xFFFF:04x}" if tag is not None else keyword


def tags_format(tags: Mapping[str, str], full: bool, short: bool) -> dict[str, Any]:
    """Main tags as Orthanc shows them: by keyword (default), ``Full``
    (``{"0010,0010": {"Name", "Type", "Value"}}``) or ``Short`` (``{"0010,0010": value}``)."""
    if full:
        return {_tag_key(k): {"Name": k, "Type": "String", "Value": v}
                for k, v in sorted(tags.items(), key=lambda kv: _tag_key(kv[0]))}
    if short:
        return {_tag_key(k): v for k, v in sorted(tags.items(), key=lambda kv: _tag_key(kv[0]))}
    return dict(tags)


def expanded(resource: dict[str, Any], full: bool, short: bool) -> dict[str, Any]:
    """A resource's JSON with its (patient) main tags in the requested format."""
    out = dict(resource)
    for key in ("MainDicomTags", "PatientMainDicomTags"):
        if key in out:
            out[key] = tags_format(out[key], full, short)
    return out
