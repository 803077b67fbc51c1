"""WADO-URI (PS3.18 9): ``GET {WadoRoot}?requestType=WADO&objectUID=...``.

``studyUID`` and ``seriesUID`` are optional (the seed's example omits them); when given they
must match the object. ``contentType`` is ``application/dicom`` (streamed, or transcoded to
``transferSyntax``) or an image type rendered with ``frameNumber``, ``rows``, ``columns``,
``region``, ``windowCenter``/``windowWidth`` and ``imageQuality``.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.web.iweb import IRequest

from dwdaemon.config import Config
from dwdaemon.dicom import pixels, reencode, render, transcode
from dwdaemon.dicom import wado_model as wm
from dwdaemon.store.store import Store
from dwdaemon.threads import ThreadPools
from dwdaemon.web import producers
from dwdaemon.web.errors import ApiError
from dwdaemon.web.query import arg
from dwdaemon.web.routing import RouteGroup
from dwdaemon.web.wado_rs import WadoService, instance_source

__all__ = ["WadoUri"]


#: Names clients use for the rendered types (Orthanc accepts ``image/jpg``).
_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "image/x-png": "image/png"}


def _content_type(request: IRequest, has_pixels: bool) -> str:
    """The first producible type of ``contentType`` (a comma-separated list is allowed)."""
    raw = arg(request, "contentType")
    if not raw:
        return "image/jpeg" if has_pixels else wm.DICOM
    for item in raw.split(","):
        media = item.split(";", 1)[0].strip().lower()
        media = _ALIASES.get(media, media)
        if media == wm.DICOM:
            return media
        if media in wm.RENDERED_MEDIA_TYPES or media in ("image/*", "*/*"):
            if not has_pixels:
                continue
            return "image/jpeg" if "*" in media else media
    raise ApiError(406, f"not acceptable: cannot produce contentType {raw!r} for this object "
                        "(offered: application/dicom" +
                        (", image/jpeg, image/png, image/gif)" if has_pixels else ")"))


def _options(request: IRequest, media: str) -> render.RenderOptions:
    try:
        rows = arg(request, "rows")
        columns = arg(request, "columns")
        region = arg(request, "region")
        center = arg(request, "windowCenter")
        width = arg(request, "windowWidth")
        quality = arg(request, "imageQuality")
        window = None
        if (center is None) != (width is None):
            raise ValueError("windowCenter and windowWidth go together")
        if center is not None and width is not None:
            window = wm.parse_window(f"{center},{width}")
        return render.RenderOptions(
            media_type=media,
            window=window,
            rows=wm.parse_positive_int(rows, "rows") if rows else None,
            columns=wm.parse_positive_int(columns, "columns") if columns else None,
            region=wm.parse_region(region) if region else None,
            quality=wm.parse_quality(quality) if quality else 90,
        )
    except ValueError as exc:
        raise ApiError(400, str(exc)) from exc


class WadoUri(RouteGroup):
    """WADO-URI at ``DicomWeb.WadoRoot``."""

    def __init__(self, config: Config, store: Store, pools: ThreadPools, wado: WadoService
                 ) -> None:
        super().__init__(config)
        self.store = store
        self.pools = pools
        self.service = wado
        self.route(self.config.dicomweb.wado_root, methods=["GET"], endpoint="wado_uri",
                   handler=self.wado)

    @inlineCallbacks
    def wado(self, request: IRequest) -> Any:
        request_type = arg(request, "requestType")
        if request_type is None:
            raise ApiError(400, "requestType is missing (expected WADO)")
        if request_type != "WADO":
            raise ApiError(400, f"requestType must be WADO, not {request_type!r}")
        sop = arg(request, "objectUID")
        if not sop:
            raise ApiError(400, "objectUID is missing")
        study = arg(request, "studyUID") or None
        series = arg(request, "seriesUID") or None
        row = yield self.store.instance_by_uid(sop, study, series)
        if row is None:
            if study or series:
                known = yield self.store.instance_by_uid(sop)
                if known is not None:
                    raise ApiError(404, f"object {sop} is not in the given study/series")
            raise ApiError(404, f"unknown object {sop}")
        count = pixels.frame_count(row.frames, row.number_of_frames)
        media = _content_type(request, count > 0)
        path = self.service.path(row)
        if media == wm.DICOM:
            # PS3.18 9: Explicit VR Little Endian unless asked ("*" keeps the stored syntax)
            wanted = arg(request, "transferSyntax") or wm.EXPLICIT_VR_LE
            if wanted == "*":
                wanted = row.transfer_syntax
                if reencode.needs_explicit_le(wanted):
                    wanted = wm.EXPLICIT_VR_LE  # PS3.18 Table 8.7.3-2, as WADO-RS
            shape = pixels.pixel_shape(row.metadata) if count else None
            if wanted != row.transfer_syntax and not (transcode.can_transcode(
                    row.transfer_syntax, wanted, has_pixels=count > 0) and (
                    shape is None or transcode.encoder_accepts(
                        wanted, shape.bits_allocated, shape.bits_stored, shape.samples))):
                raise ApiError(406, f"not acceptable: cannot convert {row.transfer_syntax} "
                                    f"to {wanted}")
            request.setHeader("Content-Type", wm.DICOM)
            request.setHeader("Content-Disposition", f'attachment; filename="{sop}.dcm"')
            if wanted == row.transfer_syntax:
                request.setHeader("Content-Length", str(row.file_size))
            else:
                self.service.admit_pixel_work()
            source = instance_source(path, row, wanted)
            return (yield producers.stream(request, [source], self.pools.io,
                                           pixel_run=self.pools.pixels))
        options = _options(request, media)
        frame = arg(request, "frameNumber")
        try:
            number = wm.parse_positive_int(frame, "frameNumber", count) if frame else 1
        except ValueError as exc:
            raise ApiError(400, str(exc)) from exc
        return (yield self.service.send_image(request, options,
                                         self.service.render_job(row, number - 1, options)))
