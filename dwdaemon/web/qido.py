"""QIDO-RS routes (PS3.18 10.6): search studies, series and instances from the index."""

from __future__ import annotations

import json
from typing import Any

import orjson
from twisted.internet.defer import inlineCallbacks
from twisted.web.iweb import IRequest

from dwdaemon.config import Config
from dwdaemon.dicom import multipart
from dwdaemon.dicom import qido_model as qm
from dwdaemon.dicom.matching import Query, QueryError, parse_query
from dwdaemon.dicom.mediatypes import AcceptError
from dwdaemon.dicom.xmlmodel import dataset_json_to_xml
from dwdaemon.store.index.search import SearchResult
from dwdaemon.store.store import Store
from dwdaemon.threads import ThreadPools
from dwdaemon.web.errors import ApiError
from dwdaemon.web.query import query_items
from dwdaemon.web.routing import RouteGroup
from dwdaemon.web.urls import Urls

JSON = qm.JSON
XML = qm.XML


def choose_media_type(header: bytes | str | None) -> str:
    """``application/dicom+json`` or ``application/dicom+xml`` (multipart); 400 for a
    malformed Accept, 406 when neither is acceptable (:func:`qido_model.answer_media_type`)."""
    try:
        media = qm.answer_media_type(header)
    except AcceptError as exc:
        raise ApiError(400, str(exc)) from exc
    if media is None:
        raise ApiError(406, "QIDO-RS answers in application/dicom+json (or application/json) "
                            'or multipart/related; type="application/dicom+xml"')
    return media


def _warning(text: str) -> str:
    return '299 dwdaemon "' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dumps_json(value: Any) -> bytes:
    """Compact UTF-8 JSON (orjson; integers beyond 64 bits fall back to the standard
    library)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        pass
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def render(result: SearchResult, media_type: str) -> tuple[bytes, str]:
    """The body and content type of an answer (``[]`` or an empty multipart when empty)."""
    if media_type == JSON:
        return dumps_json(result.datasets), JSON
    boundary = multipart.new_boundary()
    body = multipart.build(boundary, ((XML, dataset_json_to_xml(d))
                                      for d in result.datasets))
    return body, multipart.content_type(boundary, XML)


class Qido(RouteGroup):
    """QIDO-RS under the DICOMweb root: studies, series and instances, nested or not."""

    def __init__(self, config: Config, urls: Urls, store: Store, pools: ThreadPools) -> None:
        super().__init__(config)
        self.urls = urls
        self.store = store
        self.pools = pools
        self.route(self.urls.dw("studies"), methods=["GET"], endpoint="qido_studies",
                   handler=self.qido_studies)
        self.route(self.urls.dw("series"), methods=["GET"], endpoint="qido_series",
                   handler=self.qido_series)
        self.route(self.urls.dw("instances"), methods=["GET"], endpoint="qido_instances",
                   handler=self.qido_instances)
        self.route(self.urls.dw("studies/<string:study>/series"), methods=["GET"],
                   endpoint="qido_study_series", handler=self.qido_study_series)
        self.route(self.urls.dw("studies/<string:study>/instances"), methods=["GET"],
                   endpoint="qido_study_instances", handler=self.qido_study_instances)
        self.route(self.urls.dw("studies/<string:study>/series/<string:series>/instances"),
                   methods=["GET"], endpoint="qido_series_instances",
                   handler=self.qido_series_instances)

    @inlineCallbacks
    def answer(self, request: IRequest, level: str, study: str | None = None,
               series: str | None = None) -> Any:
        media_type = choose_media_type(request.getHeader(b"accept"))
        pairs = query_items(request, strict=True)
        try:
            query: Query = parse_query(
                pairs, case_sensitive=self.config.dicomweb.qido_case_sensitive,
                case_sensitive_pn=self.config.case_sensitive_pn)
        except QueryError as exc:
            raise ApiError(400, f"invalid query parameter {exc.param!r}: {exc.message}",
                           details={"Parameter": exc.param}) from exc
        maximum = (self.config.limit_find_instances if level == "instances"
                   else self.config.limit_find_results)
        base = self.urls.dicomweb_url(request)
        index = self.store.index

        def run() -> tuple[bytes, str, SearchResult]:
            result = index.search(level, query, base_url=base, study_uid=study,
                            series_uid=series, max_results=maximum)
            body, ctype = render(result, media_type)
            return body, ctype, result

        body, ctype, result = yield self.pools.db_read(run)
        warnings = [_warning(w) for w in query.warnings]
        if result.truncated:
            if result.cut_by_server:
                text = (f"the server returns at most {maximum} results per request; more "
                        f"results are available with offset={result.next_offset}")
            else:
                text = (f"results cut by limit={query.limit}; more results are available "
                        f"with offset={result.next_offset}")
            warnings.append(_warning(text))
        if warnings:
            request.responseHeaders.setRawHeaders(b"warning",
                                                  [w.encode("utf-8") for w in warnings])
        if not result.datasets and self.config.dicomweb.qido_empty_no_content:
            request.setResponseCode(204)
            return b""
        request.setHeader(b"content-type", ctype.encode("ascii"))
        request.setHeader(b"content-length", str(len(body)).encode("ascii"))
        return body

    def qido_studies(self, request: IRequest) -> Any:
        return self.answer(request, "studies")

    def qido_series(self, request: IRequest) -> Any:
        return self.answer(request, "series")

    def qido_instances(self, request: IRequest) -> Any:
        return self.answer(request, "instances")

    def qido_study_series(self, request: IRequest, study: str) -> Any:
        return self.answer(request, "series", study)

    def qido_study_instances(self, request: IRequest, study: str) -> Any:
        return self.answer(request, "instances", study)

    def qido_series_instances(self, request: IRequest, study: str, series: str) -> Any:
        return self.answer(request, "instances", study, series)
