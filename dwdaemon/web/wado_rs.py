"""WADO-RS (PS3.18 10.4): instances, metadata, bulk data, frames, rendered and thumbnails.

Everything is answered from what ingest stored: metadata concatenates the stored DICOM JSON
(bulk placeholders turned into URIs under this server's base URL), frames and bulk values are
sliced from the stored file at the recorded offsets, and whole instances are streamed from
disk (transcoded in a worker thread only when another transfer syntax is asked).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.web.iweb import IRequest

from dwdaemon.config import Config
from dwdaemon.dicom import frame_codec, multipart, pixels, reencode, render, transcode
from dwdaemon.dicom import wado_model as wm
from dwdaemon.dicom.frames import FrameLayout
from dwdaemon.dicom.jsonmodel import resolve_bulk_uris, stored_bulk_path
from dwdaemon.dicom.mediatypes import AcceptError, parse_accept
from dwdaemon.dicom.pixels import PixelShape
from dwdaemon.store.index.base import InstanceRow
from dwdaemon.store.store import Store
from dwdaemon.threads import ThreadPools
from dwdaemon.web import producers
from dwdaemon.web.errors import ApiError
from dwdaemon.web.query import arg, header
from dwdaemon.web.routing import RouteGroup
from dwdaemon.web.urls import Urls

__all__ = ["WadoRs", "WadoService"]

DICOM_JSON = "application/dicom+json"
DICOM_XML = "application/dicom+xml"
THUMBNAIL_SIZE = (128, 128)
#: Metadata of more instances than this is assembled in a worker thread, off the reactor.
LARGE_METADATA = 64


def _not_acceptable(exc: Exception) -> ApiError:
    return ApiError(406, f"not acceptable: {exc}")


def _accept(request: IRequest) -> str | None:
    accept = header(request, "accept")
    try:
        parse_accept(accept)
    except AcceptError as exc:
        raise ApiError(400, str(exc)) from exc
    return accept


def _instance_number(row: InstanceRow) -> float:
    try:
        return float(row.instance_number) if row.instance_number else float("inf")
    except ValueError:
        return float("inf")


def _layout(row: InstanceRow) -> FrameLayout:
    return pixels.layout_of(row.frames, row.number_of_frames)


def _frame_count(row: InstanceRow) -> int:
    return pixels.frame_count(row.frames, row.number_of_frames)


def _pixel_shape(row: InstanceRow) -> PixelShape:
    return pixels.pixel_shape(row.metadata)


class WadoService:
    """WADO-RS retrieval and rendering, shared by WADO-RS, WADO-URI and the core images."""

    def __init__(self, config: Config, urls: Urls, store: Store, pools: ThreadPools) -> None:
        self.config = config
        self.urls = urls
        self.store = store
        self.pools = pools

    # -- lookups -----------------------------------------------------------------------------
    @inlineCallbacks
    def rows(self, study: str, series: str | None = None) -> Any:
        rows = yield self.store.instances_by_uids(study, series)
        if not rows:
            if series is None:
                raise ApiError(404, f"unknown study {study}")
            raise ApiError(404, f"unknown series {series} in study {study}")
        return rows

    @inlineCallbacks
    def row(self, study: str, series: str, sop: str) -> Any:
        row = yield self.store.instance_by_uid(sop, study, series)
        if row is None:
            raise ApiError(404, f"unknown instance {sop} in series {series} of study {study}")
        return row

    def instance_url(self, request: IRequest, row: InstanceRow) -> str:
        return self.urls.instance_url(request, row.study_uid, row.series_uid, row.sop_uid)

    def path(self, row: InstanceRow) -> str:
        return self.store.file_path(row.file_uuid)

    # -- instances ---------------------------------------------------------------------------
    def retrieve(self, request: IRequest, rows: list[InstanceRow]) -> Any:
        """Stream ``rows`` as multipart/related application/dicom in the negotiated syntax."""
        accept = _accept(request)
        metadata_cache: dict[str, dict[str, Any]] = {}

        def can_all(_stored: str, wanted: str) -> bool:
            for row in rows:
                if row.transfer_syntax == wanted:
                    continue
                if not transcode.can_transcode(row.transfer_syntax, wanted,
                                               has_pixels=row.number_of_frames > 0):
                    return False
                if wanted in transcode.ENCODABLE_SYNTAXES and row.number_of_frames:
                    md = metadata_cache.setdefault(row.public_id, json.loads(row.metadata))
                    if not transcode.encoder_accepts(wanted, pixels.first_value(md, "00280100"),
                                                     pixels.first_value(md, "00280101"),
                                                     pixels.first_value(md, "00280002")):
                        return False
            return True

        try:
            wanted = wm.choose_instance_syntax(accept, "*", can_all)
        except wm.NotAcceptable as exc:
            raise _not_acceptable(exc) from exc
        boundary = multipart.new_boundary()
        request.setHeader("Content-Type", multipart.content_type(boundary, wm.DICOM))

        def parts() -> Iterator[tuple[str, list[tuple[str, str]], producers.Piece]]:
            for row in rows:
                syntax = row.transfer_syntax if wanted == "*" else wanted
                if wanted == "*" and reencode.needs_explicit_le(syntax):
                    syntax = wm.EXPLICIT_VR_LE  # PS3.18 Table 8.7.3-2
                headers = [("Content-Location", self.instance_url(request, row))]
                if syntax == row.transfer_syntax:
                    headers.append(("Content-Length", str(row.file_size)))  # as Orthanc
                source = instance_source(self.path(row), row, syntax)
                yield (f"{wm.DICOM}; transfer-syntax={syntax}", headers, source)

        if wanted != "*" and any(row.transfer_syntax != wanted for row in rows):
            self.admit_pixel_work()
        return producers.stream(request, producers.multipart_pieces(boundary, parts()),
                                self.pools.io, sized=True, pixel_run=self.pools.pixels)

    # -- metadata ----------------------------------------------------------------------------
    def metadata(self, request: IRequest, rows: list[InstanceRow]) -> Any:
        """The stored JSON of ``rows`` (or XML parts), with ETag / If-None-Match."""
        accept = _accept(request)
        media = _choose_metadata(accept)
        base = self.urls.dicomweb_url(request)
        digest = hashlib.sha1(usedforsecurity=False)
        digest.update(f"{media}|{base}".encode())
        for row in rows:
            digest.update(f"|{row.public_id}:{row.file_md5}:{row.last_update}".encode())
        etag = f'"{digest.hexdigest()}"'
        request.setHeader("ETag", etag)
        request.setHeader("Cache-Control", "no-cache")
        if_none_match = header(request, "if-none-match")
        if if_none_match and (if_none_match.strip() == "*" or etag in
                              [t.strip().removeprefix("W/") for t in if_none_match.split(",")]):
            request.setResponseCode(304)
            return b""
        items = [(row.metadata, self.instance_url(request, row)) for row in rows]
        if media == DICOM_JSON:
            def send(body: bytes) -> bytes:
                request.setHeader("Content-Type", DICOM_JSON)
                request.setHeader("Content-Length", str(len(body)))
                return body

            if len(items) <= LARGE_METADATA:
                return send(_json_array(items))
            return self.pools.parse(_json_array, items).addCallback(send)
        return self.pools.parse(_xml_multipart, items).addCallback(
            _send_multipart_body, request)

    # -- frames ------------------------------------------------------------------------------
    def frames(self, request: IRequest, row: InstanceRow, frame_list: str,
               stored_by_default: bool = False) -> Any:
        """Frames of ``row``; ``stored_by_default``: no Accept keeps the stored syntax (bulk
        data URIs of encapsulated Pixel Data), else native octets as Orthanc answers."""
        count = _frame_count(row)
        if count == 0:
            raise ApiError(400, f"instance {row.sop_uid} has no pixel data frames")
        try:
            numbers = wm.parse_frame_list(frame_list, count)
        except wm.FrameListError as exc:
            raise ApiError(400, str(exc)) from exc
        shape = _pixel_shape(row)

        def can_encode(syntax: str) -> bool:
            return frame_codec.can_encode(syntax, shape.bits_allocated, shape.bits_stored,
                                          shape.samples)

        try:
            accept = _accept(request)
            if accept is None and stored_by_default:
                accept = "multipart/related; type=*/*; transfer-syntax=*"
            choice = wm.choose_frames(accept, row.transfer_syntax,
                                      transcode.can_decode, can_encode)
        except wm.NotAcceptable as exc:
            raise _not_acceptable(exc) from exc
        url = self.instance_url(request, row) + "/frames/"
        sources = [(n, self._frame_source(row, n - 1, choice, shape)) for n in numbers]
        part_type = f"{choice.media_type}; transfer-syntax={choice.transfer_syntax}"
        if any(isinstance(source, producers.ComputedPart) for _, source in sources):
            self.admit_pixel_work()
        if not choice.multipart and len(sources) == 1:
            request.setHeader("Content-Type", part_type)
            request.setHeader("Content-Location", url + str(numbers[0]))
            return producers.stream(request, [sources[0][1]], self.pools.io, sized=True,
                                    pixel_run=self.pools.pixels)
        boundary = multipart.new_boundary()
        request.setHeader("Content-Type", multipart.content_type(
            boundary, choice.media_type, transfer_syntax=choice.transfer_syntax))
        parts = ((part_type, [("Content-Location", url + str(n))], source)
                 for n, source in sources)
        return producers.stream(request, producers.multipart_pieces(boundary, parts),
                                self.pools.io, sized=True, pixel_run=self.pools.pixels)

    def _frame_source(self, row: InstanceRow, index: int, choice: wm.FrameChoice,
                      shape: PixelShape | None = None) -> producers.Piece:
        path = self.path(row)
        layout = _layout(row)
        syntax, metadata = row.transfer_syntax, row.metadata
        if choice.render:
            options = render.RenderOptions(media_type="image/jpeg", quality=90)
            return producers.ComputedPart(
                lambda: pixels.render_stored(path, index, options, layout, syntax, metadata))
        if choice.encode:
            target, shape = choice.transfer_syntax, shape or _pixel_shape(row)
            return producers.ComputedPart(
                lambda: pixels.encoded_frame(path, index, layout, syntax, metadata, target, shape))
        if not choice.decode and layout.kind in ("native", "encapsulated"):
            return producers.FilePart(path, layout.frame_ranges(index))
        if not choice.decode and row.transfer_syntax not in wm.NATIVE_SYNTAXES:
            # encapsulated but not resolvable from the stored offsets: parse the fragments
            return producers.ComputedPart(lambda: pixels.encapsulated_frame(path, index))
        if row.transfer_syntax == wm.BIG_ENDIAN and layout.kind == "native":
            # big endian words of the stored frame, swapped: little endian octets, same layout
            width = pixels.swap_width(row.bulk, row.metadata)
            return producers.ComputedPart(lambda: pixels.swapped_frame(path, layout, index, width))
        if layout.kind == "encapsulated":
            return producers.ComputedPart(
                lambda: pixels.decoded_stored_frame(path, index, layout, syntax, metadata))
        return producers.ComputedPart(lambda: pixels.decoded_frame(path, index))

    # -- bulk data ---------------------------------------------------------------------------
    @inlineCallbacks
    def element_value(self, request: IRequest, row: InstanceRow, element: str) -> Any:
        """The value bytes of an element that is not bulk data (parsed from the file)."""
        multipart_wanted = _bulk_multipart(_accept(request))
        path = self.path(row)
        try:
            data = yield self.pools.parse(lambda: pixels.bulk_by_parsing(path, element))
        except (KeyError, IndexError, ValueError, TypeError, AttributeError) as exc:
            raise ApiError(404, f"no element {element} in instance {row.sop_uid}") from exc
        if not multipart_wanted:
            request.setHeader("Content-Type", wm.OCTET_STREAM)
            request.setHeader("Content-Length", str(len(data)))
            return data
        boundary = multipart.new_boundary()
        body = b"".join([
            multipart.part_header(boundary, wm.OCTET_STREAM,
                                  [("Content-Location", request.uri.decode("latin-1")),
                                   ("Content-Length", str(len(data)))]),
            data, multipart.part_separator(), multipart.closing(boundary)])
        request.setHeader("Content-Type", multipart.content_type(boundary, wm.OCTET_STREAM))
        request.setHeader("Content-Length", str(len(body)))
        return body

    def bulk(self, request: IRequest, row: InstanceRow, element: str) -> Any:
        try:
            locations = json.loads(row.bulk)
        except ValueError:
            locations = {}
        stored = stored_bulk_path(element)
        if stored is None:
            raise ApiError(404, f"no bulk data {element!r} in instance {row.sop_uid}: expected "
                                "TAG[/item/TAG...] (tags in hex, items from 1)")
        element = stored
        location = locations.get(element)
        if location is None:
            return self.element_value(request, row, element)
        offset, length, vr, little_endian, encapsulated = location[:5]
        if element == "7FE00010" and encapsulated:
            count = _frame_count(row) or 1
            return self.frames(request, row, ",".join(str(n) for n in range(1, count + 1)),
                               stored_by_default=True)
        accept = _accept(request)
        multipart_wanted = _bulk_multipart(accept)
        path = self.path(row)
        swap = 0 if little_endian else pixels.SWAP_WIDTH.get(vr, 0)
        needs_parse = offset < 0 or (not little_endian and element == "7FE00010")
        source: producers.Piece
        rng = None if needs_parse or swap else _parse_range(header(request, "range"), length)
        if needs_parse:
            source = producers.ComputedPart(lambda: pixels.bulk_by_parsing(path, element))
        elif swap:  # big endian words: served as little endian, like everything else
            source = producers.ComputedPart(
                lambda: pixels.byteswap(pixels.read_ranges(path, [(offset, length)]), swap))
        elif rng is not None:
            start, end = rng
            source = producers.FilePart(path, [(offset + start, end - start + 1)])
        else:
            source = producers.FilePart(path, [(offset, length)])
        if rng is not None:
            start, end = rng
            request.setResponseCode(206)
            request.setHeader("Content-Range", f"bytes {start}-{end}/{length}")
            request.setHeader("Content-Type", wm.OCTET_STREAM)
            request.setHeader("Content-Length", str(end - start + 1))
            return producers.stream(request, [source], self.pools.io)
        request.setHeader("Accept-Ranges", "bytes")
        if not multipart_wanted:
            request.setHeader("Content-Type", wm.OCTET_STREAM)
            if not needs_parse:
                request.setHeader("Content-Length", str(length))
            return producers.stream(request, [source], self.pools.io)
        boundary = multipart.new_boundary()
        request.setHeader("Content-Type", multipart.content_type(boundary, wm.OCTET_STREAM))
        headers = [("Content-Location", request.uri.decode("latin-1"))]
        if not needs_parse:
            headers.append(("Content-Length", str(length)))
        parts = [(wm.OCTET_STREAM, headers, source)]
        return producers.stream(request, producers.multipart_pieces(boundary, parts),
                                self.pools.io)

    # -- rendered ----------------------------------------------------------------------------
    def render_options(self, request: IRequest, thumbnail: bool,
                       forced_type: str | None = None) -> render.RenderOptions:
        try:
            media = wm.choose_rendered(_accept(request), forced_type)
        except wm.NotAcceptable as exc:
            raise _not_acceptable(exc) from exc
        try:
            window = arg(request, "window")
            viewport = arg(request, "viewport")
            quality = arg(request, "quality")
            vp = wm.parse_viewport(viewport) if viewport else None
            return render.RenderOptions(
                media_type=media,
                window=wm.parse_window(window) if window else None,
                viewport=(vp.width, vp.height) if vp else (THUMBNAIL_SIZE if thumbnail
                                                            else None),
                source=vp.source if vp else None,
                quality=wm.parse_quality(quality) if quality else (75 if thumbnail else 90),
            )
        except ValueError as exc:
            raise ApiError(400, str(exc)) from exc

    def render_job(self, row: InstanceRow, index: int, options: render.RenderOptions
                   ) -> Callable[[], bytes]:
        """A blocking callable rendering frame ``index`` of ``row`` (for a worker thread)."""
        path = self.path(row)
        layout = _layout(row)
        syntax = row.transfer_syntax
        metadata = row.metadata
        return lambda: pixels.render_stored(path, index, options, layout, syntax, metadata)

    def send_image(self, request: IRequest, options: render.RenderOptions,
                   produce: Callable[[], bytes]) -> Any:
        def done(data: bytes) -> bytes:
            request.setHeader("Content-Type", options.media_type)
            request.setHeader("Content-Length", str(len(data)))
            return data

        self.admit_pixel_work()
        return self.pools.pixels(produce).addCallbacks(done, _render_failed)

    def admit_pixel_work(self) -> None:
        """503 when more pixel jobs wait than ``MaximumPixelQueue`` allows."""
        limit = self.config.maximum_pixel_queue
        if limit and self.pools.backlog("pixels") >= limit:
            raise ApiError(503, "too many rendering/transcoding jobs waiting "
                                f"(MaximumPixelQueue is {limit}); try again later",
                           headers={"Retry-After": "2"})

    def rendered_instance(self, request: IRequest, row: InstanceRow, thumbnail: bool) -> Any:
        options = self.render_options(request, thumbnail)
        count = _frame_count(row)
        if count == 0:
            raise ApiError(400, f"instance {row.sop_uid} has no pixel data to render")
        path = self.path(row)
        if options.media_type == "image/gif" and count > 1 and not thumbnail:
            return self.send_image(request, options,
                                   lambda: pixels.render_frames(path, list(range(count)), options))
        return self.send_image(request, options, self.render_job(row, 0, options))

    def rendered_frames(self, request: IRequest, row: InstanceRow, frame_list: str,
                        thumbnail: bool) -> Any:
        count = _frame_count(row)
        if count == 0:
            raise ApiError(400, f"instance {row.sop_uid} has no pixel data to render")
        try:
            numbers = wm.parse_frame_list(frame_list, count)
        except wm.FrameListError as exc:
            raise ApiError(400, str(exc)) from exc
        options = self.render_options(request, thumbnail)
        path = self.path(row)
        indexes = [n - 1 for n in numbers]
        if len(indexes) == 1 or thumbnail:
            return self.send_image(request, options,
                                   self.render_job(row, indexes[0], options))
        if options.media_type == "image/gif":
            return self.send_image(request, options,
                                   lambda: pixels.render_frames(path, indexes, options))
        return self.rendered_parts(request, [(row, i) for i in indexes], options)

    def rendered_parts(self, request: IRequest, items: list[tuple[InstanceRow, int]],
                       options: render.RenderOptions) -> Any:
        boundary = multipart.new_boundary()
        request.setHeader("Content-Type", multipart.content_type(boundary, options.media_type))

        def parts() -> Iterator[tuple[str, list[tuple[str, str]], producers.Piece]]:
            for row, index in items:
                location = self.instance_url(request, row) + f"/frames/{index + 1}/rendered"
                yield (options.media_type, [("Content-Location", location)],
                       producers.ComputedPart(self.render_job(row, index, options)))

        self.admit_pixel_work()
        return producers.stream(request, producers.multipart_pieces(boundary, parts()),
                                self.pools.io, pixel_run=self.pools.pixels)

    def rendered_group(self, request: IRequest, rows: list[InstanceRow], thumbnail: bool
                       ) -> Any:
        """Study/series ``rendered``: one image (Orthanc's choice: first frame of the instance
        with the smallest Orthanc ID) unless ``multipart/related`` was asked, then one part per
        instance. ``thumbnail``: one image of the middle instance."""
        images = [row for row in rows if _frame_count(row) > 0]
        if not images:
            raise ApiError(400, "no instance with pixel data to render")
        options = self.render_options(request, thumbnail)
        if thumbnail:
            row = images[len(images) // 2]
            return self.send_image(request, options, self.render_job(row, 0, options))
        try:
            _media, multipart_asked = wm.choose_rendered_answer(_accept(request))
        except wm.NotAcceptable as exc:  # pragma: no cover - render_options raised already
            raise _not_acceptable(exc) from exc
        if multipart_asked:  # one part per instance, only when asked
            return self.rendered_parts(request, [(row, 0) for row in images], options)
        # As Orthanc (its suite's test_rendered_studies_series): the study/series answer is
        # the first instance (lowest InstanceNumber, then arrival) rendered as its own
        # rendered resource is, one image with the same bytes.
        row = min(enumerate(images), key=lambda item: (_instance_number(item[1]), item[0]))[1]
        if options.media_type == "image/gif" and _frame_count(row) > 1:
            path, count = self.path(row), _frame_count(row)
            return self.send_image(request, options,
                                   lambda: pixels.render_frames(path, list(range(count)), options))
        return self.send_image(request, options, self.render_job(row, 0, options))


# -- blocking helpers (worker threads) -----------------------------------------------------------

def instance_source(path: str, row: InstanceRow, syntax: str) -> producers.Piece:
    """The stored file of ``row`` in ``syntax``: as stored, streamed from Implicit VR LE or
    big endian to Explicit VR LE (header parsed, pixel values copied by chunks), or
    transcoded in memory (one instance at a time) for the other conversions."""
    if syntax == row.transfer_syntax:
        return producers.FilePart(path, size=row.file_size)
    if syntax == wm.EXPLICIT_VR_LE and reencode.needs_explicit_le(row.transfer_syntax):
        try:
            location = json.loads(row.bulk).get("7FE00010")
        except (ValueError, AttributeError):
            location = None
        if location is None and not row.number_of_frames:
            source_syntax = row.transfer_syntax
            return producers.IteratorPart(
                lambda: reencode.explicit_le_chunks(path, source_syntax, 0, -1, ""))
        if location is not None and location[0] >= 0 and not location[4]:
            offset, length, vr = location[0], location[1], location[2]
            source_syntax = row.transfer_syntax
            return producers.IteratorPart(lambda: reencode.explicit_le_chunks(
                path, source_syntax, offset, length, vr))
    return producers.ComputedPart(_transcoder(path, syntax))


def _transcoder(path: str, syntax: str) -> Callable[[], bytes]:
    return lambda: transcode.transcode(path, syntax)


def _json_array(items: list[tuple[str, str]]) -> bytes:
    """The stored JSON texts, bulk URIs resolved, as one JSON array."""
    return ("[" + ",".join(resolve_bulk_uris(text, url) for text, url in items)
            + "]").encode("utf-8")


def _xml_multipart(items: list[tuple[str, str]]) -> tuple[str, bytes]:
    from dwdaemon.dicom.xmlmodel import dataset_json_to_xml

    boundary = multipart.new_boundary()
    body = multipart.build(boundary, [
        (DICOM_XML, dataset_json_to_xml(json.loads(resolve_bulk_uris(text, url))))
        for text, url in items])
    return boundary, body


def _send_multipart_body(result: tuple[str, bytes], request: IRequest) -> bytes:
    boundary, body = result
    request.setHeader("Content-Type", multipart.content_type(boundary, DICOM_XML))
    request.setHeader("Content-Length", str(len(body)))
    return body


def _render_failed(failure: Any) -> Any:
    if failure.check(ApiError):
        return failure
    raise ApiError(406, f"cannot render this image: {failure.value}")


# -- negotiation helpers -------------------------------------------------------------------------

def _choose_metadata(accept: str | None) -> str:
    """The metadata media type for ``accept`` (:func:`wado_model.metadata_media_type`)."""
    media = wm.metadata_media_type(accept)
    if media is None:
        raise ApiError(406, "not acceptable: metadata is offered as application/dicom+json or "
                            'multipart/related; type="application/dicom+xml"')
    return media


def _bulk_multipart(accept: str | None) -> bool:
    """Whether bulk data answers multipart (:func:`wado_model.bulk_multipart`)."""
    wanted = wm.bulk_multipart(accept)
    if wanted is None:
        raise ApiError(406, "not acceptable: bulk data is offered as application/octet-stream")
    return wanted


def _parse_range(header: str | None, length: int) -> tuple[int, int] | None:
    """A single ``bytes=a-b`` range as inclusive (start, end); None to send everything."""
    if not header or not header.strip().lower().startswith("bytes="):
        return None
    spec = header.split("=", 1)[1].strip()
    if "," in spec:
        return None
    first, sep, last = spec.partition("-")
    if not sep:
        return None
    try:
        if first.strip() == "":
            suffix = int(last)
            if suffix <= 0:
                raise ApiError(416, "unsatisfiable range", headers={
                    "Content-Range": f"bytes */{length}"})
            return (max(0, length - suffix), length - 1)
        start = int(first)
        end = int(last) if last.strip() else length - 1
    except ValueError:
        return None
    if start >= length or end < start:
        raise ApiError(416, "unsatisfiable range", headers={"Content-Range": f"bytes */{length}"})
    return (start, min(end, length - 1))


# -- routes ------------------------------------------------------------------------------------

class WadoRs(RouteGroup):
    """WADO-RS under the DICOMweb root: instances, metadata, frames, bulk data, rendered and
    thumbnail images of studies, series and instances."""

    def __init__(self, config: Config, urls: Urls, wado: WadoService) -> None:
        super().__init__(config)
        self.wado = wado
        st = urls.root + "studies/<string:study>"
        se = st + "/series/<string:series>"
        inst = se + "/instances/<string:sop>"
        route = self.route
        route(st, ["GET"], self.retrieve_study, endpoint="wado_rs_study")
        route(se, ["GET"], self.retrieve_series, endpoint="wado_rs_series")
        route(inst, ["GET"], self.retrieve_instance, endpoint="wado_rs_instance")
        route(st + "/metadata", ["GET"], self.study_metadata, endpoint="wado_rs_study_metadata")
        route(se + "/metadata", ["GET"], self.series_metadata,
              endpoint="wado_rs_series_metadata")
        route(inst + "/metadata", ["GET"], self.instance_metadata,
              endpoint="wado_rs_instance_metadata")
        route(inst + "/frames/<string:frames>", ["GET"], self.frames, endpoint="wado_rs_frames")
        route(inst + "/bulk/<path:element>", ["GET"], self.bulk, endpoint="wado_rs_bulk")
        for kind, group, instance, frames in (
                ("rendered", self.rendered_group, self.rendered_instance, self.rendered_frames),
                ("thumbnail", self.thumbnail_group, self.thumbnail_instance,
                 self.thumbnail_frames)):
            route(f"{st}/{kind}", ["GET"], group, endpoint=f"wado_rs_study_{kind}")
            route(f"{se}/{kind}", ["GET"], group, endpoint=f"wado_rs_series_{kind}")
            route(f"{inst}/{kind}", ["GET"], instance, endpoint=f"wado_rs_instance_{kind}")
            route(f"{inst}/frames/<string:frames>/{kind}", ["GET"], frames,
                  endpoint=f"wado_rs_frames_{kind}")

    @inlineCallbacks
    def retrieve_study(self, request: IRequest, study: str) -> Any:
        rows = yield self.wado.rows(study)
        return (yield self.wado.retrieve(request, rows))

    @inlineCallbacks
    def retrieve_series(self, request: IRequest, study: str, series: str) -> Any:
        rows = yield self.wado.rows(study, series)
        return (yield self.wado.retrieve(request, rows))

    @inlineCallbacks
    def retrieve_instance(self, request: IRequest, study: str, series: str, sop: str) -> Any:
        row = yield self.wado.row(study, series, sop)
        return (yield self.wado.retrieve(request, [row]))

    @inlineCallbacks
    def study_metadata(self, request: IRequest, study: str) -> Any:
        rows = yield self.wado.rows(study)
        return (yield self.wado.metadata(request, rows))

    @inlineCallbacks
    def series_metadata(self, request: IRequest, study: str, series: str) -> Any:
        rows = yield self.wado.rows(study, series)
        return (yield self.wado.metadata(request, rows))

    @inlineCallbacks
    def instance_metadata(self, request: IRequest, study: str, series: str, sop: str) -> Any:
        row = yield self.wado.row(study, series, sop)
        return (yield self.wado.metadata(request, [row]))

    @inlineCallbacks
    def frames(self, request: IRequest, study: str, series: str, sop: str, frames: str) -> Any:
        row = yield self.wado.row(study, series, sop)
        return (yield self.wado.frames(request, row, frames))

    @inlineCallbacks
    def bulk(self, request: IRequest, study: str, series: str, sop: str, element: str) -> Any:
        row = yield self.wado.row(study, series, sop)
        return (yield self.wado.bulk(request, row, element))

    @inlineCallbacks
    def _group(self, request: IRequest, study: str, series: str | None, thumb: bool) -> Any:
        rows = yield self.wado.rows(study, series)
        return (yield self.wado.rendered_group(request, rows, thumb))

    @inlineCallbacks
    def _instance(self, request: IRequest, study: str, series: str, sop: str,
                  thumb: bool) -> Any:
        row = yield self.wado.row(study, series, sop)
        return (yield self.wado.rendered_instance(request, row, thumb))

    @inlineCallbacks
    def _frames(self, request: IRequest, study: str, series: str, sop: str, frames: str,
                thumb: bool) -> Any:
        row = yield self.wado.row(study, series, sop)
        return (yield self.wado.rendered_frames(request, row, frames, thumb))

    def rendered_group(self, request: IRequest, study: str, series: str | None = None) -> Any:
        return self._group(request, study, series, False)

    def thumbnail_group(self, request: IRequest, study: str, series: str | None = None) -> Any:
        return self._group(request, study, series, True)

    def rendered_instance(self, request: IRequest, study: str, series: str, sop: str) -> Any:
        return self._instance(request, study, series, sop, False)

    def thumbnail_instance(self, request: IRequest, study: str, series: str, sop: str) -> Any:
        return self._instance(request, study, series, sop, True)

    def rendered_frames(self, request: IRequest, study: str, series: str, sop: str,
                        frames: str) -> Any:
        return self._frames(request, study, series, sop, frames, False)

    def thumbnail_frames(self, request: IRequest, study: str, series: str, sop: str,
                         frames: str) -> Any:
        return self._frames(request, study, series, sop, frames, True)
