"""QIDO-RS query parameters -> typed criteria, and a pure evaluator of them (PS3.4 C.2.2.2).

No Twisted here.  :func:`parse_query` turns decoded query parameters into a :class:`Query`:
the matching criteria (universal, single value, list of UIDs, wildcard, range, sequence),
``includefield``, ``limit``/``offset``, ``fuzzymatching``, and warnings for keys that name no
DICOM attribute.  Bad input raises :class:`QueryError` naming the parameter.

:meth:`Criterion.matches` evaluates a criterion against a DICOM JSON dataset (PS3.18 F); the
index uses it for attributes outside its typed columns.  :func:`fold` and :func:`fuzzy_words`
are the normalisations shared with the SQL side.

Rules (also in the README):

- string matching is case-sensitive unless ``case_sensitive=False`` (``QidoCaseSensitive``);
  that switch covers the text VRs :data:`TEXT_VRS` (AE, CS, LO, LT, PN, SH, ST, UC, UR, UT);
- person names match against the whole value (``A=I=P``) or any one of its groups, trailing
  ``^`` and spaces ignored;
- ``fuzzymatching=true`` (PN only): both sides folded (NFKD, accents dropped, case folded); the
  query is split into words on ``^``, spaces, commas, ``=`` and ``-``; it matches when every
  query word is a prefix of some word of the name (``*``/``?`` keep their meaning inside words).
"""

from __future__ import annotations

import datetime
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from dwdaemon.dicom.dictionary import private_vr, tag_for_name

__all__ = [
    "Criterion",
    "Query",
    "QueryError",
    "TEXT_VRS",
    "WILDCARD_VRS",
    "fold",
    "fuzzy_words",
    "parse_query",
    "resolve_attribute",
]

#: VRs whose matching ``QidoCaseSensitive`` governs.
TEXT_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
#: VRs on which ``*`` and ``?`` are wildcards (PS3.4 C.2.2.2.4).
WILDCARD_VRS = TEXT_VRS
INT_VRS = frozenset({"IS", "SL", "SS", "UL", "US", "SV", "UV"})
FLOAT_VRS = frozenset({"DS", "FL", "FD"})
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
#: VRs whose values are lists (comma or backslash separated) in a query.
LIST_VRS = frozenset({"UI", "CS"})
RANGE_VRS = frozenset({"DA", "TM", "DT"})
RESERVED = frozenset({"limit", "offset", "includefield", "fuzzymatching"})
#: limit/offset beyond this are clamped (SQL integers are 64-bit).
MAX_PAGE = 2**53

#: Attributes computed by the server (PS3.18 10.6.3.3), with their VRs.
COMPUTED_VRS: dict[str, str] = {
    "00080056": "CS",  # InstanceAvailability
    "00080061": "CS",  # ModalitiesInStudy
    "00080062": "UI",  # SOPClassesInStudy
    "00081190": "UR",  # RetrieveURL
    "00201206": "IS",  # NumberOfStudyRelatedSeries
    "00201208": "IS",  # NumberOfStudyRelatedInstances
    "00201209": "IS",  # NumberOfSeriesRelatedInstances
}

_HEX_TAG = re.compile(r"[0-9A-Fa-f]{8}")
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
_DA = r"\d{8}"
_TM = r"\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?"
_DT = r"\d{4}(?:\d{2}(?:\d{2}(?:\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?)?)?)?(?:[+-]\d{4})?"
_FORMS = {"DA": _DA, "TM": _TM, "DT": _DT}
_RANGE = {vr: re.compile(f"({form})?-({form})?") for vr, form in _FORMS.items()}
_SINGLE = {vr: re.compile(form) for vr, form in _FORMS.items()}
_WORD_SPLIT = re.compile(r"[\^\s,=\-]+")


class QueryError(ValueError):
    """A query parameter is invalid; ``param`` names it."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = message


# --------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------


def fold(text: str) -> str:
    """Fold *text* for accent- and case-insensitive comparison (NFKD, no marks, casefold)."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return unicodedata.normalize("NFC", stripped.casefold())


def fuzzy_words(name: str) -> list[str]:
    """The folded words of a person name (all groups), for fuzzy matching."""
    return [w for w in _WORD_SPLIT.split(fold(name)) if w]


def pn_text(value: Any) -> str:
    """A JSON person name value as DICOM text ``A=I=P`` (trailing empty groups dropped)."""
    if isinstance(value, str):
        return value
    if not isinstance(value, Mapping):
        return ""
    groups = [value.get(g) or "" for g in ("Alphabetic", "Ideographic", "Phonetic")]
    while groups and not groups[-1]:
        groups.pop()
    return "=".join(groups)


def clean_pn(text: str) -> str:
    """Strip trailing component separators and spaces of each group of a PN text."""
    return "=".join(g.rstrip("^ ") for g in text.split("="))


def pn_candidates(value: Any) -> list[str]:
    """The strings a PN query is matched against: the whole value and each non-empty group."""
    whole = clean_pn(pn_text(value))
    out = [whole]
    if "=" in whole:
        out.extend(g for g in whole.split("=") if g)
    return out


def wildcard_regex(pattern: str) -> re.Pattern[str]:
    """Compile a DICOM wildcard pattern (``*``, ``?``) into an anchored regex."""
    parts = []
    for char in pattern:
        if char == "*":
            parts.append(".*")
        elif char == "?":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), re.DOTALL)


def pad_upper(vr: str, value: str) -> str:
    """Complete a partial DA/TM/DT upper bound so that string comparison includes it."""
    value = strip_offset(vr, value)
    if vr == "TM":
        full = "235959.999999"
        if "." in value:
            return value + "9" * (13 - len(value))
        return value + full[len(value):]
    if vr == "DT":
        full = "99991231235959.999999"
        if "." in value:
            return value + "9" * (21 - len(value))
        return value + full[len(value):]
    return value


def strip_offset(vr: str, value: str) -> str:
    """Drop a DT UTC offset suffix (``+hhmm``/``-hhmm``) for comparisons."""
    if vr == "DT" and len(value) > 5 and value[-5] in "+-":
        return value[:-5]
    return value


def normalise_time(vr: str, value: str) -> str:
    """Stored DA/TM/DT text in comparable form (colons and dashes of old forms removed)."""
    value = value.strip()
    if vr == "TM":
        value = value.replace(":", "")
    elif vr == "DA":
        value = value.replace(".", "").replace("-", "") if len(value) == 10 else value
    return strip_offset(vr, value)


# --------------------------------------------------------------------------
# Criteria
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Criterion:
    """One matching key: a tag path (sequence items then attribute), a VR and a rule.

    ``kind`` is one of ``universal``, ``single``, ``list``, ``wildcard``, ``range``, ``fuzzy``.
    ``values`` holds the (normalised) single value, the list, the pattern, ``(low, high)`` with
    ``None`` for an open end, or the fuzzy words.
    """

    param: str
    path: tuple[str, ...]
    vr: str
    kind: str
    values: tuple[Any, ...] = ()
    case_sensitive: bool = True

    @property
    def tag(self) -> str:
        """The first tag of the path (the attribute of the queried level)."""
        return self.path[0]

    @property
    def folds_case(self) -> bool:
        """Whether comparisons fold case (text VR and case-insensitive mode)."""
        return not self.case_sensitive and self.vr in TEXT_VRS

    # -- evaluation ---------------------------------------------------------

    def matches(self, dataset: Mapping[str, Any]) -> bool:
        """Whether *dataset* (DICOM JSON) satisfies this criterion."""
        if self.kind == "universal":
            return True
        return self._match_path(dataset, 0)

    def _match_path(self, dataset: Mapping[str, Any], depth: int) -> bool:
        element = dataset.get(self.path[depth])
        if not isinstance(element, Mapping):
            return False
        values = element.get("Value") or []
        if depth + 1 < len(self.path):
            return any(
                isinstance(item, Mapping) and self._match_path(item, depth + 1) for item in values
            )
        return any(self.matches_value(v) for v in values if v is not None)

    def matches_value(self, value: Any) -> bool:
        """Whether one JSON value of the attribute satisfies this criterion."""
        if self.kind == "universal":
            return True
        vr = self.vr
        if vr == "PN" or isinstance(value, Mapping):
            if self.kind == "fuzzy":
                return self._match_fuzzy(pn_text(value))
            candidates = pn_candidates(value)
        elif vr in INT_VRS or vr in FLOAT_VRS:
            try:
                number = float(value)
            except (TypeError, ValueError):
                return False
            return any(number == v for v in self.values)
        else:
            text = value if isinstance(value, str) else str(value)
            if vr in RANGE_VRS:
                text = normalise_time(vr, text)
            candidates = [text.rstrip(" ") if vr not in RANGE_VRS else text]
        if self.folds_case:
            candidates = [c.casefold() for c in candidates]
        if self.kind == "single":
            target = self.values[0]
            if vr in ("TM", "DT"):
                return any(target <= c <= pad_upper(vr, target) for c in candidates)
            return target in candidates
        if self.kind == "list":
            return any(c in self.values for c in candidates)
        if self.kind == "wildcard":
            regex: re.Pattern[str] = self.values[1]
            return any(regex.fullmatch(c) for c in candidates)
        if self.kind == "range":
            low, high = self.values
            for c in candidates:
                if low is not None and c < low:
                    continue
                if high is not None and c > pad_upper(vr, high):
                    continue
                return True
            return False
        if self.kind == "fuzzy":  # fuzzy on a non-PN attribute: folded prefix match
            return self._match_fuzzy(candidates[0])
        return False  # pragma: no cover

    def _match_fuzzy(self, text: str) -> bool:
        words = fuzzy_words(text)
        return all(any(regex.match(w) for w in words) for regex in self.values[1])


@dataclass
class Query:
    """A parsed QIDO-RS query."""

    criteria: list[Criterion] = field(default_factory=list)
    includefields: list[str] = field(default_factory=list)
    include_all: bool = False
    limit: int | None = None
    offset: int = 0
    fuzzy: bool = False
    warnings: list[str] = field(default_factory=list)

    def matching_tags(self) -> list[str]:
        """Top-level tags of the matching keys, in order (returned with the answers)."""
        seen: dict[str, None] = {}
        for crit in self.criteria:
            seen.setdefault(crit.tag, None)
        return list(seen)

    def criterion(self, tag: str) -> list[Criterion]:
        """The non-universal criteria on a top-level attribute."""
        return [c for c in self.criteria if c.path == (tag,) and c.kind != "universal"]


# --------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------


def vr_of(tag: str) -> str | None:
    """Dictionary VR of an 8-hex-digit tag (first of a multi-VR), ``None`` if unknown."""
    if tag in COMPUTED_VRS:
        return COMPUTED_VRS[tag]
    configured = private_vr(tag)
    if configured is not None:
        return configured
    try:
        vr = dictionary_VR(int(tag, 16))
    except KeyError:
        return None
    return vr.split(" or ")[0]


def resolve_attribute(name: str) -> str | None:
    """An attribute keyword or 8-hex-digit tag -> upper-case tag, ``None`` if unknown."""
    name = name.strip()
    if _HEX_TAG.fullmatch(name):
        tag = name.upper()
        group = int(tag[:4], 16)
        if group % 2 and group not in (1, 3, 5, 7, 0xFFFF):  # private: VR from the data
            return tag
        return tag if vr_of(tag) is not None or keyword_for_tag(int(tag, 16)) else None
    number = tag_for_keyword(name)
    if number is None:
        return tag_for_name(name)
    return f"{number:08X}"


def _parse_int(param: str, raw: str, *, minimum: int) -> int:
    raw = raw.strip()
    if not re.fullmatch(r"\+?\d+", raw):
        raise QueryError(param, f"must be a non-negative integer, got {raw!r}")
    value = int(raw)
    if value < minimum:
        raise QueryError(param, f"must be >= {minimum}, got {value}")
    return min(value, MAX_PAGE)


def _check_date(param: str, text: str) -> None:
    try:
        datetime.date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        raise QueryError(param, f"{text!r} is not a valid date (YYYYMMDD)") from None


def _check_time(param: str, text: str) -> None:
    if len(text) >= 2 and int(text[:2]) > 23:
        raise QueryError(param, f"{text!r} is not a valid time (HHMMSS.FFFFFF)")
    if len(text) >= 4 and int(text[2:4]) > 59:
        raise QueryError(param, f"{text!r} is not a valid time (HHMMSS.FFFFFF)")
    if len(text) >= 6 and int(text[4:6]) > 60:
        raise QueryError(param, f"{text!r} is not a valid time (HHMMSS.FFFFFF)")


def _check_temporal(param: str, vr: str, text: str) -> None:
    if vr == "DA":
        _check_date(param, text)
    elif vr == "TM":
        _check_time(param, text)
    else:
        body = strip_offset(vr, text)
        if len(body) >= 8:
            _check_date(param, body[:8])
        elif len(body) == 6 and not 1 <= int(body[4:6]) <= 12:
            raise QueryError(param, f"{text!r} is not a valid date-time")
        if len(body) > 8:
            _check_time(param, body[8:])


def _temporal(param: str, vr: str, raw: str, case_sensitive: bool,
              path: tuple[str, ...]) -> Criterion:
    name = {"DA": "date (YYYYMMDD)", "TM": "time (HHMMSS.FFFFFF)",
            "DT": "date-time (YYYYMMDDHHMMSS.FFFFFF&ZZXX)"}[vr]
    if _SINGLE[vr].fullmatch(raw):
        _check_temporal(param, vr, raw)
        return Criterion(param, path, vr, "single", (strip_offset(vr, raw),), case_sensitive)
    found = _RANGE[vr].fullmatch(raw)
    if found is None:
        raise QueryError(param, f"{raw!r} is not a {name} or a range of them")
    low, high = found.group(1), found.group(2)
    for part in (low, high):
        if part:
            _check_temporal(param, vr, part)
    if low is None and high is None:
        return Criterion(param, path, vr, "universal", (), case_sensitive)
    low_n = strip_offset(vr, low) if low else None
    high_n = strip_offset(vr, high) if high else None
    if low_n and high_n and low_n > pad_upper(vr, high_n):
        raise QueryError(param, f"range {raw!r} ends before it starts")
    return Criterion(param, path, vr, "range", (low_n, high_n), case_sensitive)


def _check_form(param: str, vr: str, value: str) -> None:
    """Raise QueryError unless *value* has the form of *vr*."""
    if vr == "UI":
        if len(value) > 64 or not _UID.fullmatch(value):
            raise QueryError(param, f"{value!r} is not a UID")
    elif vr in INT_VRS:
        if not re.fullmatch(r"[+-]?\d+", value.strip()):
            raise QueryError(param, f"{value!r} is not an integer ({vr})")
    elif vr in FLOAT_VRS:
        try:
            float(value)
        except ValueError:
            raise QueryError(param, f"{value!r} is not a number ({vr})") from None
    elif vr == "AS":
        if not re.fullmatch(r"\d{3}[DWMY]", value):
            raise QueryError(param, f"{value!r} is not an age string (nnnD/W/M/Y)")
    elif vr == "AT" and not _HEX_TAG.fullmatch(value):
        raise QueryError(param, f"{value!r} is not a tag (8 hex digits)")


def make_criterion(param: str, path: tuple[str, ...], vr: str, raw: str, *,
                   case_sensitive: bool = True, fuzzy: bool = False) -> Criterion:
    """Build the criterion for one key (already resolved to *path* and *vr*) and raw value."""
    if raw == "" or raw == "*":
        return Criterion(param, path, vr, "universal", (), case_sensitive)
    if vr == "SQ":
        raise QueryError(param, "a sequence matches through its items: use Sequence.Attribute")
    if vr in BINARY_VRS - {"UN"} or vr in ("OB", "OW"):
        raise QueryError(param, f"matching on binary attributes ({vr}) is not supported")
    if vr in RANGE_VRS:
        return _temporal(param, vr, raw, case_sensitive, path)
    folds = not case_sensitive and vr in TEXT_VRS
    if fuzzy and vr == "PN":
        words = [w for w in _WORD_SPLIT.split(fold(raw)) if w and w != "*"]
        if not words:
            return Criterion(param, path, vr, "universal", (), case_sensitive)
        regexes = tuple(wildcard_regex(w + "*") for w in words)
        return Criterion(param, path, vr, "fuzzy", (tuple(words), regexes), case_sensitive)
    if vr in LIST_VRS:
        items = [v.strip() for v in re.split(r"[,\\]", raw)]
        items = [v for v in items if v]
        if not items:
            raise QueryError(param, f"{raw!r} is an empty list")
        if vr == "UI":
            for item in items:
                _check_form(param, vr, item)
        if vr == "CS" and len(items) == 1 and any(c in items[0] for c in "*?"):
            pattern = items[0].casefold() if folds else items[0]
            return Criterion(param, path, vr, "wildcard", (pattern, wildcard_regex(pattern)),
                             case_sensitive)
        if vr == "CS" and any(c in item for item in items for c in "*?"):
            raise QueryError(param, "wildcards cannot be combined with a list of values")
        if folds:
            items = [v.casefold() for v in items]
        kind = "single" if len(items) == 1 else "list"
        return Criterion(param, path, vr, kind, tuple(dict.fromkeys(items)), case_sensitive)
    if vr in INT_VRS or vr in FLOAT_VRS:
        if "*" in raw or "?" in raw:
            raise QueryError(param, f"wildcards are not allowed on {vr} attributes")
        items = [v for v in raw.split("\\") if v]
        for item in items:
            _check_form(param, vr, item)
        numbers = tuple(float(v) for v in items)
        return Criterion(param, path, vr, "single" if len(numbers) == 1 else "list", numbers,
                         case_sensitive)
    if vr not in WILDCARD_VRS and vr != "UN" and ("*" in raw or "?" in raw):
        raise QueryError(param, f"wildcards are not allowed on {vr} attributes")
    _check_form(param, vr, raw)
    value = clean_pn(raw) if vr == "PN" else raw.rstrip(" ")
    if folds:
        value = value.casefold()
    if "*" in value or "?" in value:
        return Criterion(param, path, vr, "wildcard", (value, wildcard_regex(value)),
                         case_sensitive)
    return Criterion(param, path, vr, "single", (value,), case_sensitive)


def _resolve_path(param: str, key: str) -> tuple[tuple[str, ...], str] | None:
    parts = key.split(".")
    tags: list[str] = []
    vr = "UN"
    for index, part in enumerate(parts):
        tag = resolve_attribute(part)
        if tag is None:
            return None
        vr = vr_of(tag) or "UN"
        if index < len(parts) - 1 and vr != "SQ":
            raise QueryError(param, f"{part} is not a sequence, it cannot have a nested key")
        tags.append(tag)
    return tuple(tags), vr


def parse_query(params: Iterable[tuple[str, str]], *, case_sensitive: bool = True,
                case_sensitive_pn: bool = True) -> Query:
    """Parse decoded ``(key, value)`` query parameters into a :class:`Query`.

    Parameters
    ----------
    params : iterable of (str, str)
        Percent-decoded query parameters, in order; keys may repeat.
    case_sensitive : bool
        ``QidoCaseSensitive``: whether text matching is case-sensitive.
    case_sensitive_pn : bool
        ``CaseSensitivePN``: person names (PN) match case-sensitively only when both this and
        ``case_sensitive`` are true.

    Raises
    ------
    QueryError
        On a malformed value, naming the parameter.
    """
    params = list(params)
    query = Query()
    for key, value in params:
        if key.lower() == "fuzzymatching":
            lowered = value.strip().lower()
            if lowered not in ("true", "false", ""):
                raise QueryError(key, f"must be true or false, got {value!r}")
            query.fuzzy = lowered == "true"
    for key, value in params:
        lowered = key.lower()
        if lowered == "fuzzymatching":
            continue
        if lowered == "limit":
            query.limit = _parse_int(key, value, minimum=0) or None
            continue
        if lowered == "offset":
            query.offset = _parse_int(key, value, minimum=0)
            continue
        if lowered == "includefield":
            for name in (v.strip() for v in value.split(",")):
                if not name:
                    continue
                if name.lower() == "all":
                    query.include_all = True
                    continue
                tag = resolve_attribute(name.split(".")[0])
                if tag is None:
                    query.warnings.append(f"includefield {name!r} names no DICOM attribute")
                elif tag not in query.includefields:
                    query.includefields.append(tag)
            continue
        resolved = _resolve_path(key, key)
        if resolved is None:
            query.warnings.append(f"{key!r} names no DICOM attribute; ignored")
            continue
        path, vr = resolved
        sensitive = case_sensitive and (case_sensitive_pn or vr != "PN")
        query.criteria.append(make_criterion(key, path, vr, value,
                                             case_sensitive=sensitive, fuzzy=query.fuzzy))
    return query


def patient_name_columns(dataset: Mapping[str, Any]) -> dict[str, str | None]:
    """Index columns that make PatientName matching fast (filled at ingest).

    ``patient_name_ci``: the case-folded whole name (trailing ``^`` dropped), for prefix/equality
    searches in both case modes; ``patient_name_groups``: ``=g1=g2=g3=`` folded, only for names
    with several component groups; ``patient_name_words``: `` w1 w2 `` folded fuzzy words.
    """
    element = dataset.get("00100010")
    values = element.get("Value") if isinstance(element, Mapping) else None
    if not values:
        return {"patient_name_ci": None, "patient_name_groups": None, "patient_name_words": None}
    texts = [clean_pn(pn_text(v)) for v in values if v is not None]
    whole = "\\".join(texts)
    groups = [g for t in texts for g in t.split("=") if g]
    many = any("=" in t for t in texts)
    return {
        "patient_name_ci": whole.casefold(),
        "patient_name_groups": ("=" + "=".join(g.casefold() for g in groups) + "=")
        if many else None,
        "patient_name_words": " " + " ".join(w for t in texts for w in fuzzy_words(t)) + " ",
    }
