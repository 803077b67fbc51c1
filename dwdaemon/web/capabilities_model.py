"""PS3.18 capabilities (Retrieve Capabilities): the route table as a WADL or JSON document.

Pure functions, no Twisted: :func:`describe_rules` turns werkzeug rules (path template and
methods, so the description cannot drift from what is routed) into resources; the query
parameters and media types of each kind of route come from :data:`KINDS`, keyed by the
route's endpoint name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import quoteattr

WADL = "application/vnd.sun.wadl+xml"
WADL_NS = "http://wadl.dev.java.net/2009/02"

_DICOM_MULTI = 'multipart/related; type="application/dicom"'
_XML_MULTI = 'multipart/related; type="application/dicom+xml"'
_SEARCH = [("limit", "xs:int"), ("offset", "xs:int"), ("fuzzymatching", "xs:boolean"),
           ("includefield", "xs:string"), ("{attributeID}", "xs:string")]
_RENDER = [("window", "xs:string"), ("viewport", "xs:string"), ("quality", "xs:int")]
_IMAGES = ["image/jpeg", "image/png", "image/gif"]


@dataclass(frozen=True)
class Kind:
    """What a kind of route takes and gives, per method."""

    params: tuple[tuple[str, str], ...] = ()
    consumes: tuple[str, ...] = ()
    produces: tuple[str, ...] = ()
    summary: str = ""


#: Endpoint name patterns (regular expressions, first match wins) and their description.
KINDS: list[tuple[str, str, Kind]] = [
    (r"stow", "POST", Kind(consumes=(_DICOM_MULTI, 'multipart/related; '
                                     'type="application/dicom+json"', 'multipart/related; '
                                     'type="application/dicom+xml"'),
                           produces=("application/dicom+json", "application/dicom+xml"),
                           summary="Store Instances (STOW-RS)")),
    (r"qido_", "GET", Kind(params=tuple(_SEARCH),
                           produces=("application/dicom+json", _XML_MULTI),
                           summary="Search (QIDO-RS)")),
    (r"_(rendered)$", "GET", Kind(params=tuple(_RENDER), produces=tuple(_IMAGES),
                                  summary="Retrieve rendered (WADO-RS)")),
    (r"_(thumbnail)$", "GET", Kind(params=(("viewport", "xs:string"),),
                                   produces=tuple(_IMAGES),
                                   summary="Retrieve thumbnail (WADO-RS)")),
    (r"_metadata$", "GET", Kind(produces=("application/dicom+json", _XML_MULTI),
                                summary="Retrieve metadata (WADO-RS)")),
    (r"wado_rs_frames$", "GET", Kind(produces=(
        "application/octet-stream", 'multipart/related; type="application/octet-stream"',
        "image/jpeg", "image/jls", "image/jp2", "image/jpx", "image/x-dicom-rle"),
        summary="Retrieve frames (WADO-RS)")),
    (r"wado_rs_bulk$", "GET", Kind(produces=(
        "application/octet-stream", 'multipart/related; type="application/octet-stream"'),
        summary="Retrieve bulk data (WADO-RS)")),
    (r"wado_rs_", "GET", Kind(params=(("transfer-syntax", "xs:string"),),
                              produces=(_DICOM_MULTI,), summary="Retrieve instances (WADO-RS)")),
    (r"wado_uri$", "GET", Kind(params=(
        ("requestType", "xs:string"), ("studyUID", "xs:string"), ("seriesUID", "xs:string"),
        ("objectUID", "xs:string"), ("contentType", "xs:string"), ("frameNumber", "xs:int"),
        ("rows", "xs:int"), ("columns", "xs:int"), ("region", "xs:string"),
        ("windowCenter", "xs:decimal"), ("windowWidth", "xs:decimal"),
        ("imageQuality", "xs:int"), ("transferSyntax", "xs:string")),
        produces=("application/dicom", *_IMAGES), summary="WADO-URI")),
    (r"^servers\.", "", Kind(consumes=("application/json",), produces=("application/json",),
                             summary="DICOMweb client (Orthanc plugin API)")),
    (r"^metrics:", "GET", Kind(produces=("text/plain; version=0.0.4",),
                               summary="Prometheus metrics")),
    (r"", "", Kind(produces=("application/json",))),
]

_CONVERTER = re.compile(r"<(?:[a-z_]+(?:\([^)]*\))?:)?([A-Za-z_][A-Za-z0-9_]*)>")


def template_of(rule: str) -> str:
    """``/studies/<string:study>`` -> ``/studies/{study}``."""
    return _CONVERTER.sub(lambda m: "{" + m.group(1) + "}", rule)


def kind_of(endpoint: str, method: str) -> Kind:
    for pattern, kind_method, kind in KINDS:
        if re.search(pattern, endpoint) and (not kind_method or kind_method == method):
            return kind
    return Kind()


@dataclass
class Method:
    name: str
    kind: Kind


@dataclass
class Resource:
    """One path template and its methods."""

    path: str
    methods: dict[str, Method] = field(default_factory=dict)

    @property
    def template_params(self) -> list[str]:
        return re.findall(r"{([^}]+)}", self.path)


def describe_rules(rules: list[tuple[str, list[str], str]], prefix: str = "/"
                   ) -> list[Resource]:
    """Resources of ``(rule, methods, endpoint)`` under ``prefix`` (paths relative to it)."""
    out: dict[str, Resource] = {}
    for rule, methods, endpoint in rules:
        if not rule.startswith(prefix) and rule + "/" != prefix:
            continue
        path = template_of(rule)[len(prefix):] if rule.startswith(prefix) else ""
        resource = out.setdefault(path, Resource(path))
        for method in methods:
            if method in ("HEAD", "OPTIONS"):
                continue
            resource.methods[method] = Method(method, kind_of(endpoint, method))
    return [r for r in sorted(out.values(), key=lambda r: r.path) if r.methods]


def allow_header(resources: list[Resource]) -> str:
    methods = {"OPTIONS"}
    for resource in resources:
        methods.update(resource.methods)
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


def to_wadl(resources: list[Resource], base: str) -> bytes:
    """The WADL document (W3C member submission 2009) of ``resources`` at ``base``."""
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             f'<application xmlns="{WADL_NS}" '
             'xmlns:xs="http://www.w3.org/2001/XMLSchema">',
             f"  <resources base={quoteattr(base)}>"]
    for resource in resources:
        lines.append(f"    <resource path={quoteattr(resource.path)}>")
        for name in resource.template_params:
            lines.append(f'      <param name={quoteattr(name)} style="template" '
                         'type="xs:string" required="true"/>')
        for method in resource.methods.values():
            kind = method.kind
            lines.append(f"      <method name={quoteattr(method.name)}>")
            if kind.summary:
                lines.append(f"        <doc title={quoteattr(kind.summary)}/>")
            if kind.params or kind.consumes:
                lines.append("        <request>")
                for pname, ptype in kind.params:
                    lines.append(f"          <param name={quoteattr(pname)} style=\"query\" "
                                 f"type={quoteattr(ptype)}/>")
                for media in kind.consumes:
                    lines.append(f"          <representation mediaType={quoteattr(media)}/>")
                lines.append("        </request>")
            lines.append("        <response>")
            for media in kind.produces:
                lines.append(f"          <representation mediaType={quoteattr(media)}/>")
            lines.append("        </response>")
            lines.append("      </method>")
        lines.append("    </resource>")
    lines += ["  </resources>", "</application>", ""]
    return "\n".join(lines).encode("utf-8")


def to_json(resources: list[Resource], base: str) -> dict[str, Any]:
    """The same description as JSON (the structure of the WADL document)."""
    return {"base": base, "resources": [{
        "path": r.path,
        "templateParameters": r.template_params,
        "methods": [{
            "name": m.name,
            "summary": m.kind.summary,
            "queryParameters": [p for p, _ in m.kind.params],
            "consumes": list(m.kind.consumes),
            "produces": list(m.kind.produces),
        } for m in r.methods.values()],
    } for r in resources]}
