"""STOW-RS (PS3.18 10.5): ``POST {Root}studies`` and ``POST {Root}studies/{study}``.

HTTP only: the headers are checked here (media types, Accept, boundary) and the spooled body
(Twisted keeps bodies over 100 KB in a temporary file; see :mod:`dwdaemon.web.bodies` for the
size limit) is handed to the store's :class:`~dwdaemon.store.ingest_stream.IngestStream`,
which parses, writes, validates and commits it part by part. The outcomes per instance become
the PS3.18 response (:mod:`dwdaemon.dicom.stow_model`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from dwdaemon.config import Config
from dwdaemon.dicom import stow_model as sm
from dwdaemon.dicom.mediatypes import AcceptError, negotiate
from dwdaemon.dicom.multipart_reader import MultipartError, parse_content_type
from dwdaemon.store.store import IngestResult, Store
from dwdaemon.web.errors import ApiError
from dwdaemon.web.limits import RefusalLog
from dwdaemon.web.metrics import Metrics
from dwdaemon.web.routing import RouteGroup
from dwdaemon.web.urls import Urls

log = Logger()

__all__ = ["Stow", "StowTransaction"]

#: Longest boundary parameter accepted (RFC 2046 allows 70; some clients go beyond).
MAX_BOUNDARY = 200

_ACCEPT_OFFERS = [sm.DICOM_JSON, sm.DICOM_XML]
_ACCEPT_ALIASES = {
    "application/json": sm.DICOM_JSON,
    "application/xml": sm.DICOM_XML,
    "text/xml": sm.DICOM_XML,
}
_BODY_TYPES = (sm.DICOM, sm.DICOM_JSON, sm.DICOM_XML)


# -- request handling -----------------------------------------------------------------------

@dataclass
class _Request:
    boundary: str
    body_type: str
    expected_study: str | None
    accept: str


def _check_request(request: IRequest, study: str | None) -> _Request:
    """Validate headers: 415 for media types, 406 for Accept, 400 for the rest."""
    try:
        accept = negotiate(request.getHeader(b"accept"), _ACCEPT_OFFERS, _ACCEPT_ALIASES)
    except AcceptError as exc:
        raise ApiError(400, str(exc)) from exc
    media, params = parse_content_type(request.getHeader(b"content-type"))
    if media != "multipart/related":
        raise ApiError(415, "STOW-RS expects a multipart/related body "
                            f"(Content-Type {media or 'missing'})")
    body_type, _ = parse_content_type(params.get("type", sm.DICOM))
    if body_type not in _BODY_TYPES:
        raise ApiError(415, f"unsupported multipart type {body_type!r}: expected "
                            "application/dicom, application/dicom+json or application/dicom+xml")
    if accept is None:
        raise ApiError(406, "cannot answer in any media type the Accept header allows "
                            "(application/dicom+json, application/dicom+xml)")
    boundary = params.get("boundary", "")
    if not boundary:
        raise ApiError(400, "multipart/related Content-Type without a boundary parameter")
    if len(boundary) > MAX_BOUNDARY or not boundary.isascii():
        raise ApiError(400, f"multipart boundary parameter over {MAX_BOUNDARY} characters "
                            "or not ASCII (RFC 2046 allows 70)")
    return _Request(boundary, body_type, study, accept)


class StowTransaction:
    """One STOW-RS request: hand the body to the store, collect the outcomes, answer."""

    def __init__(self, store: Store, metrics: Metrics | None, refusals: RefusalLog | None,
                 base_url: str, request: IRequest, req: _Request) -> None:
        self.request = request
        self.req = req
        self.store = store
        self.metrics = metrics
        self.refusals = refusals
        self.stored: list[tuple[int, sm.StoredInstance]] = []
        self.failed: list[tuple[int, sm.FailedInstance]] = []
        #: The DICOMweb root URL as the client sees it (computed once per request).
        self.base_url = base_url

    @inlineCallbacks
    def run(self) -> Any:
        body = self.request.content
        if body is None:
            raise ApiError(400, "empty body")
        stream = self.store.ingest_stream(body, self.req.boundary, self.req.body_type,
                                          self.req.expected_study, self.stored_one, self.fail)
        try:
            malformed = yield stream.run()
        except MultipartError as exc:
            raise ApiError(400, f"malformed multipart body: {exc}") from exc
        if malformed is not None:
            if not self.stored and not self.failed:
                raise ApiError(400, f"malformed multipart body: {malformed}")
            self.failed.append((stream.order, sm.FailedInstance(
                "", "", sm.CANNOT_UNDERSTAND, f"malformed multipart body: {malformed}")))
        if not self.stored and not self.failed:
            raise ApiError(400, "the multipart body holds no DICOM instance")
        return self.answer()

    def stored_one(self, order: int, result: IngestResult) -> None:
        """Record an instance stored."""
        url = (f"{self.base_url}/studies/{result.study_uid}/series/{result.series_uid}"
               f"/instances/{result.sop_uid}")
        warning = sm.WARNING_COERCION if result.warnings else None
        self.stored.append((order, sm.StoredInstance(
            result.sop_class_uid, result.sop_uid, result.study_uid, url, warning)))

    def fail(self, order: int, sop_class: str, sop_uid: str, reason: int, message: str) -> None:
        """Record an instance refused (logged and counted)."""
        refusals = self.refusals
        if refusals is not None:  # one warning line, rate-limited per client address
            host = getattr(self.request.getClientAddress(), "host", "?")
            refusals.refused(host, f"STOW-RS instance {reason:#06x}", message)
        else:
            log.info("STOW-RS refused an instance ({reason:#06x}): {message}", reason=reason,
                     message=message)
        metrics = self.metrics
        if metrics is not None:
            metrics.part_refused(reason)
        self.failed.append((order, sm.FailedInstance(sop_class, sop_uid, reason, message)))

    def answer(self) -> bytes:
        stored = [s for _, s in sorted(self.stored, key=lambda p: p[0])]
        failed = [f for _, f in sorted(self.failed, key=lambda p: p[0])]
        study_url = sm.study_url_for(stored, self.req.expected_study,
                                     lambda s: f"{self.base_url}/studies/{s}")
        doc = sm.build_response(stored, failed, study_url)
        status = sm.response_status(stored, failed)
        request = self.request
        request.setResponseCode(status)
        if self.req.accept == sm.DICOM_XML:
            from dwdaemon.dicom.xmlmodel import dataset_json_to_xml

            body = dataset_json_to_xml(doc)
            request.setHeader(b"content-type", b"application/dicom+xml")
        else:
            body = json.dumps(doc).encode("utf-8")
            request.setHeader(b"content-type", b"application/dicom+json")
        if failed and stored:
            request.setHeader(b"warning", b'299 dwdaemon "some instances were not stored"')
        request.setHeader(b"content-length", str(len(body)).encode())
        return body


class Stow(RouteGroup):
    """STOW-RS under the DICOMweb root: ``POST studies`` and ``POST studies/{study}``."""

    def __init__(self, config: Config, urls: Urls, store: Store, metrics: Metrics | None,
                 refusals: RefusalLog | None) -> None:
        super().__init__(config)
        self.urls = urls
        self.store = store
        self.metrics = metrics
        self.refusals = refusals
        self.route(self.urls.dw("studies"), methods=["POST"], handler=self.stow_studies)
        self.route(self.urls.dw("studies/<string:study>"), methods=["POST"],
                   handler=self.stow_study)

    def transaction(self, request: IRequest, study: str | None) -> StowTransaction:
        """A transaction for ``request`` (checked: media type, boundary, Accept)."""
        return StowTransaction(self.store, self.metrics, self.refusals,
                               self.urls.dicomweb_url(request), request,
                               _check_request(request, study))

    def stow_studies(self, request: IRequest) -> Any:
        return _uncancellable(self.transaction(request, None).run())

    def stow_study(self, request: IRequest, study: str) -> Any:
        return _uncancellable(self.transaction(request, study).run())


def _uncancellable(work: Any) -> Any:
    """``work`` as seen by Klein, which cancels a handler's Deferred when the client leaves.

    Cancelling would stop the transaction at its current wait (a worker thread still parsing,
    parts still in flight) and skip its clean-up; instead the transaction runs to its end
    (the lost body fails it soon) and removes its temporary files, and its result is dropped.
    """
    out: Deferred[Any] = Deferred(lambda _: None)

    def forward(result: Any) -> None:
        if not out.called:
            out.callback(result)  # a Failure goes to the errbacks

    work.addBoth(forward)
    return out
