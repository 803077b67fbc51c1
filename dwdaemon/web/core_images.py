"""Orthanc core routes that render an instance: ``GET /instances/{id}/rendered`` and
``GET /instances/{id}/frames/{n}/rendered``.

DICOMweb users call them beside WADO (Orthanc's own suite compares them with WADO-URI): PNG
by default, JPEG when ``Accept: image/jpeg`` (``quality``, default 90), the file's window
(or the one of ``window-center``/``window-width``), ``width``/``height`` to fit. The image
is rendered exactly as WADO-URI renders it (same bytes for the same parameters).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.web.iweb import IRequest

from dwdaemon.config import Config
from dwdaemon.dicom import pixels, render
from dwdaemon.dicom import wado_model as wm
from dwdaemon.dicom.mediatypes import AcceptError, negotiate
from dwdaemon.store.store import Store
from dwdaemon.web.errors import ApiError
from dwdaemon.web.query import arg
from dwdaemon.web.routing import RouteGroup
from dwdaemon.web.wado_rs import WadoService

__all__ = ["CoreImages"]

#: Orthanc's core /rendered answers PNG unless JPEG is asked.
OFFERS = ("image/png", "image/jpeg")


def _options(request: IRequest) -> render.RenderOptions:
    try:
        media = negotiate(request.getHeader("accept"), OFFERS,
                          {"image/jpg": "image/jpeg", "image/*": "image/png"})
    except AcceptError as exc:
        raise ApiError(400, str(exc)) from exc
    if media is None:
        raise ApiError(406, "not acceptable: rendered images are image/png or image/jpeg")
    try:
        center, width = arg(request, "window-center"), arg(request, "window-width")
        if (center is None) != (width is None):
            raise ValueError("window-center and window-width go together")
        rows, columns, quality = (arg(request, "height"), arg(request, "width"),
                                  arg(request, "quality"))
        return render.RenderOptions(
            media_type=media,
            window=wm.parse_window(f"{center},{width}") if center is not None else None,
            rows=wm.parse_positive_int(rows, "height") if rows else None,
            columns=wm.parse_positive_int(columns, "width") if columns else None,
            quality=wm.parse_quality(quality) if quality else 90)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from exc


class CoreImages(RouteGroup):
    """``GET /instances/{id}/rendered`` and ``GET /instances/{id}/frames/{n}/rendered``."""

    def __init__(self, config: Config, store: Store, wado: WadoService) -> None:
        super().__init__(config)
        self.store = store
        self.wado = wado
        self.route("/instances/<public_id>/rendered", methods=["GET"],
                   endpoint="core_instance_rendered", handler=self.instance_rendered)
        self.route("/instances/<public_id>/frames/<int:frame>/rendered", methods=["GET"],
                   endpoint="core_frame_rendered", handler=self.frame_rendered)

    @inlineCallbacks
    def rendered(self, request: IRequest, public_id: str, frame: int) -> Any:
        row = yield self.store.instance(public_id)
        if row is None:
            raise ApiError(404, f"unknown instance {public_id}")
        count = pixels.frame_count(row.frames, row.number_of_frames)
        if count == 0:
            raise ApiError(400, f"instance {public_id} has no pixel data to render")
        if not 0 <= frame < count:
            raise ApiError(400, f"frame {frame} out of range (the instance has {count})")
        options = _options(request)
        return (yield self.wado.send_image(request, options,
                                         self.wado.render_job(row, frame, options)))

    def instance_rendered(self, request: IRequest, public_id: str) -> Any:
        return self.rendered(request, public_id, 0)

    def frame_rendered(self, request: IRequest, public_id: str, frame: int) -> Any:
        return self.rendered(request, public_id, frame)  # Orthanc numbers frames from 0 here
