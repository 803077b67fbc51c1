"""Orthanc core routes beside DICOMweb: ``POST /tools/find``, ``POST /tools/lookup`` and
``GET|DELETE /changes``."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.web.iweb import IRequest

from dwdaemon.config import Config
from dwdaemon.dicom.orthanc_find import FindError, expanded, parse_find
from dwdaemon.store.store import Store
from dwdaemon.web.errors import ApiError
from dwdaemon.web.query import query_args
from dwdaemon.web.responses import json_body
from dwdaemon.web.routing import RouteGroup

#: Orthanc's default and largest page of ``GET /changes``.
CHANGES_DEFAULT_LIMIT = 100
CHANGES_MAX_LIMIT = 10000


def _body_json(request: IRequest) -> Any:
    request.content.seek(0)
    raw = request.content.read()
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, f"the body must be JSON: {exc}") from exc


def _int_arg(request: IRequest, name: str, default: int) -> int:
    values = query_args(request).get(name)
    if not values or values[0] == "":
        return default
    try:
        number = int(values[0])
    except ValueError as exc:
        raise ApiError(400, f"parameter {name} must be a non-negative integer") from exc
    if number < 0:
        raise ApiError(400, f"parameter {name} must be a non-negative integer")
    return number


class Tools(RouteGroup):
    """``POST /tools/find``, ``POST /tools/lookup`` and ``GET|DELETE /changes``."""

    def __init__(self, config: Config, store: Store) -> None:
        super().__init__(config)
        self.store = store
        self.route("/tools/find", methods=["POST"], handler=self.find)
        self.route("/tools/lookup", methods=["POST"], handler=self.lookup)
        self.route("/changes", methods=["GET"], handler=self.changes)
        self.route("/changes", methods=["DELETE"], endpoint="changes.clear",
                   handler=self.clear_changes)

    @inlineCallbacks
    def find(self, request: IRequest) -> Any:
        try:
            wanted = parse_find(_body_json(request),
                                self.config.case_sensitive_pn)
        except FindError as exc:
            raise ApiError(400, str(exc)) from exc
        ids = yield self.store.find_ids(
            wanted.level, wanted.matches, wanted.since, wanted.limit,
            wanted.matches_dataset if wanted.needs_dataset else None,
            wanted.exact_identifiers())
        if not wanted.expand:
            return json_body(request, ids)
        out = []
        for public_id in ids:
            resource = yield self.store.resource(wanted.level, public_id)
            if resource is not None:  # deleted meanwhile
                out.append(expanded(resource, wanted.full, wanted.short))
        return json_body(request, out)

    @inlineCallbacks
    def lookup(self, request: IRequest) -> Any:
        request.content.seek(0)
        try:
            identifier = request.content.read().decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            raise ApiError(400, "the body must be a UTF-8 identifier") from exc
        if not identifier:
            raise ApiError(400, "the body must be a DICOM identifier (PatientID or a UID)")
        found = yield self.store.lookup(identifier)
        return json_body(request, found)

    @inlineCallbacks
    def changes(self, request: IRequest) -> Any:
        last = "last" in query_args(request)
        limit = min(_int_arg(request, "limit", CHANGES_DEFAULT_LIMIT), CHANGES_MAX_LIMIT)
        doc = yield self.store.changes(_int_arg(request, "since", 0), limit, last)
        return json_body(request, doc)

    @inlineCallbacks
    def clear_changes(self, request: IRequest) -> Any:
        yield self.store.clear_changes()
        return json_body(request, {})
