"""Pixel work for WADO (frames, rendered, bulk Pixel Data): blocking, for worker threads.

Frames are read from their stored byte ranges (:class:`~dwdaemon.dicom.frames.FrameLayout`)
and decoded with the instance's stored DICOM JSON as header when possible; otherwise the file
is parsed. No Twisted here: the web layer runs these in its thread pools.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

from dwdaemon.dicom import frame_codec, render, transcode
from dwdaemon.dicom.frames import FrameLayout


def layout_of(frames: str, number_of_frames: int) -> FrameLayout:
    """The frame layout of an instance's stored layout JSON text (``unresolved`` if unreadable)."""
    try:
        return FrameLayout.from_json(json.loads(frames))
    except (ValueError, KeyError, TypeError):
        return FrameLayout("unresolved", count=number_of_frames)


def frame_count(frames: str, number_of_frames: int) -> int:
    """How many frames an instance has (0 without Pixel Data)."""
    if not number_of_frames:
        return 0
    layout = layout_of(frames, number_of_frames)
    return layout.count if layout.kind in ("native", "encapsulated") else number_of_frames


def first_value(metadata: dict[str, Any], tag: str) -> Any:
    """The first value of ``tag`` in a DICOM JSON dataset (None when absent)."""
    values = metadata.get(tag, {}).get("Value")
    return values[0] if values else None


@dataclass(frozen=True)
class PixelShape:
    """What the encoders need to know of an instance's pixels (from its stored JSON)."""

    bits_allocated: int
    bits_stored: int
    samples: int
    signed: bool
    photometric: str


def pixel_shape(metadata: str) -> PixelShape:
    """The pixel description of an instance's stored DICOM JSON text."""
    md = json.loads(metadata)
    allocated = int(first_value(md, "00280100") or 8)
    return PixelShape(allocated, int(first_value(md, "00280101") or allocated),
                      int(first_value(md, "00280002") or 1),
                      int(first_value(md, "00280103") or 0) == 1,
                      str(first_value(md, "00280004") or ""))


def swap_width(bulk: str, metadata: str) -> int:
    """Byte-swap width of big endian native Pixel Data (from an instance's stored bulk
    locations and DICOM JSON texts): none for OB, else its word size."""
    try:
        vr = json.loads(bulk)["7FE00010"][2]
    except (ValueError, KeyError, IndexError, TypeError):
        vr = "OW"
    if vr == "OB":
        return 0
    allocated = pixel_shape(metadata).bits_allocated
    return allocated // 8 if allocated in (32, 64) else 2


def read_ranges(path: str, ranges: list[tuple[int, int]]) -> bytes:
    with open(path, "rb") as fp:
        chunks = []
        for offset, length in ranges:
            fp.seek(offset)
            chunks.append(fp.read(length))
    return b"".join(chunks)


@functools.lru_cache(maxsize=512)
def render_header(metadata: str) -> Any:
    """The rendering header of an instance's stored JSON (cached; treated as read-only)."""
    return transcode.header_from_json(json.loads(metadata))


def render_stored(path: str, index: int, options: render.RenderOptions, layout: FrameLayout,
                   syntax: str, metadata: str) -> bytes:
    """Render from the stored frame bytes and JSON when possible, else by decoding the file."""
    if layout.kind in ("native", "encapsulated"):
        header = render_header(metadata)
        if header is not None:
            arr = transcode.decode_stored_frame(read_ranges(path, layout.frame_ranges(index)),
                                                header, syntax)
            if arr is not None:
                return render.render(arr, header, options, frame=index)
    return render_frame(path, index, options)


def decoded_frame(path: str, index: int) -> bytes:
    arr, header = transcode.decode_frame(path, index)
    return transcode.frame_native_bytes(arr, int(header.get("BitsAllocated", 8) or 8))


def decoded_stored_frame(path: str, index: int, layout: FrameLayout, syntax: str,
                          metadata: str) -> bytes:
    """Decode a frame from its stored fragments (no file parse), else from the file."""
    header = render_header(metadata)
    if header is not None:
        arr = transcode.decode_stored_frame(read_ranges(path, layout.frame_ranges(index)),
                                            header, syntax)
        if arr is not None:
            return transcode.frame_native_bytes(arr, int(header.BitsAllocated))
    return decoded_frame(path, index)


def encoded_frame(path: str, index: int, layout: FrameLayout, syntax: str, metadata: str,
                   target: str, shape: PixelShape) -> bytes:
    """Decode frame ``index`` and encode it in the compressed syntax ``target``."""
    arr = None
    if layout.kind in ("native", "encapsulated"):
        header = render_header(metadata)
        if header is not None:
            arr = transcode.decode_stored_frame(
                read_ranges(path, layout.frame_ranges(index)), header, syntax)
    if arr is None:
        arr, _header = transcode.decode_frame(path, index)
    return frame_codec.encode_frame(arr, target, shape.bits_allocated, shape.bits_stored,
                                    signed=shape.signed, photometric=shape.photometric)


def encapsulated_frame(path: str, index: int) -> bytes:
    from pydicom import dcmread
    from pydicom.encaps import generate_frames

    ds = dcmread(path)
    count = int(ds.get("NumberOfFrames", 1) or 1)
    for position, frame in enumerate(generate_frames(ds.PixelData, number_of_frames=count)):
        if position == index:
            return frame
    raise ValueError(f"frame {index + 1} not found")


def swapped_frame(path: str, layout: FrameLayout, index: int, width: int) -> bytes:
    """A native big endian frame as little endian octets: the words around it are read
    from their boundaries (8-bit OW frames may start or end inside a word), swapped, cut."""
    ((offset, length),) = layout.frame_ranges(index)
    if width < 2:
        return read_ranges(path, [(offset, length)])
    relative = offset - layout.offset
    start = relative - relative % width
    end = relative + length
    end += -end % width
    data = byteswap(read_ranges(path, [(layout.offset + start, end - start)]), width)
    return data[relative - start:relative - start + length]


SWAP_WIDTH = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}


def byteswap(data: bytes, width: int) -> bytes:
    if width < 2:
        return data
    import numpy as np

    usable = len(data) - len(data) % width
    return np.frombuffer(data[:usable], f">u{width}").astype(f"<u{width}").tobytes()


def bulk_by_parsing(path: str, element: str) -> bytes:
    if element == "7FE00010":
        from pydicom import dcmread

        ds = dcmread(path)
        arr = ds.pixel_array
        return transcode.frame_native_bytes(arr, int(ds.get("BitsAllocated", 8) or 8))
    from dwdaemon.dicom.bulk import read_bulk_by_parsing

    return read_bulk_by_parsing(path, element)


def render_frame(path: str, index: int, options: render.RenderOptions) -> bytes:
    arr, header = transcode.decode_frame(path, index)
    return render.render(arr, header, options, frame=index)


def render_frames(path: str, indexes: list[int], options: render.RenderOptions) -> bytes:
    from pydicom import dcmread
    from pydicom.pixels import iter_pixels

    header = dcmread(path, stop_before_pixels=True)
    frames = iter_pixels(path, indices=indexes)
    return render.render_frames(frames, header, options)
