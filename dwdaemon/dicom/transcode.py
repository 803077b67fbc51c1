"""Transfer-syntax conversion of whole instances (pure; no Twisted).

Decodes anything pydicom (with pylibjpeg, openjpeg, pyjpegls and rle) can
decode to Explicit VR Little Endian, and encodes to RLE Lossless, JPEG-LS
Lossless and JPEG 2000 Lossless. When a conversion cannot be made,
:class:`TranscodeError` is raised so that a web route can answer 406.

Lossless conversions keep the SOP Instance UID: the instance is the same.
"""

from __future__ import annotations

import io
import os
import warnings
from typing import BinaryIO

import numpy as np
from pydicom import dcmread, dcmwrite
from pydicom.dataset import Dataset, FileDataset
from pydicom.pixels import get_decoder, pack_bits, pixel_array
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from dwdaemon.dicom import frame_codec

__all__ = [
    "NATIVE_SYNTAXES",
    "ENCODABLE_SYNTAXES",
    "OUTPUT_SYNTAXES",
    "TranscodeError",
    "can_decode",
    "can_transcode",
    "decode_frame",
    "frame_native_bytes",
    "transcode",
]

#: Uncompressed syntaxes we read; the little endian ones we can also write.
NATIVE_SYNTAXES = frozenset({
    ImplicitVRLittleEndian, ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
})
#: Compressed syntaxes pydicom encodes for us (all lossless).
_PYDICOM_ENCODED = frozenset({RLELossless, JPEGLSLossless, JPEG2000Lossless})
#: Compressed syntaxes we can encode to: the JPEG family (:mod:`frame_codec`, lossy only
#: when 4.50/4.51 is asked by name) and pydicom's lossless encoders.
ENCODABLE_SYNTAXES = _PYDICOM_ENCODED | frame_codec.JPEG_SYNTAXES
#: Every syntax :func:`transcode` can produce.
OUTPUT_SYNTAXES = frozenset(
    {ImplicitVRLittleEndian, ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian}
    | ENCODABLE_SYNTAXES
)

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_SWAP_WIDTH = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}


class TranscodeError(Exception):
    """The instance cannot be converted to the asked transfer syntax."""


def can_decode(transfer_syntax: str) -> bool:
    """Whether pixel data in `transfer_syntax` can be decoded here."""
    uid = UID(transfer_syntax)
    if uid in NATIVE_SYNTAXES:
        return True
    try:
        return bool(get_decoder(uid).is_available)
    except (NotImplementedError, ValueError):
        return False


def can_transcode(source: str, target: str, has_pixels: bool = True) -> bool:
    """Whether an instance stored in `source` can be served in `target`."""
    if source == target:
        return True
    if target not in OUTPUT_SYNTAXES:
        return False
    if not has_pixels:
        return True
    return can_decode(source)


Source = str | os.PathLike[str] | bytes | BinaryIO


def _read(src: Source, **kwargs: object) -> FileDataset:
    if isinstance(src, bytes | bytearray | memoryview):
        src = io.BytesIO(bytes(src))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dcmread(src, **kwargs)  # type: ignore[arg-type]


def _has_pixels(ds: Dataset) -> bool:
    return any(k in ds for k in _PIXEL_KEYWORDS)


def _swap_binary(ds: Dataset) -> None:
    """Byte-swap OW/OF/OL/OD/OV values (other than pixel data) in place."""
    for elem in ds.iterall():
        width = _SWAP_WIDTH.get(elem.VR)
        if not width or elem.keyword in _PIXEL_KEYWORDS or not elem.value:
            continue
        value = elem.value
        if isinstance(value, bytes) and len(value) % width == 0:
            elem.value = np.frombuffer(value, f">u{width}").astype(f"<u{width}").tobytes()


def _native_little_endian(ds: FileDataset) -> None:
    """Turn a big endian / native dataset into Explicit VR Little Endian in place."""
    source = UID(ds.file_meta.TransferSyntaxUID)
    if not source.is_little_endian:
        if "PixelData" in ds:
            arr = ds.pixel_array
            if ds.get("BitsAllocated") == 1:
                data = pack_bits(arr)
            else:
                data = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
                if ds.get("SamplesPerPixel", 1) > 1:
                    ds.PlanarConfiguration = 0
            if len(data) % 2:
                data += b"\0"
            ds.PixelData = data
            ds["PixelData"].VR = "OB" if ds.get("BitsAllocated", 8) <= 8 else "OW"
        for _elem in ds.iterall():  # convert raw elements while the old encoding applies
            pass
        _swap_binary(ds)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian


def _write(ds: FileDataset, target: UID) -> bytes:
    for _elem in ds.iterall():  # convert raw elements (their VR may be implicit) before re-encoding
        pass
    ds.file_meta.TransferSyntaxUID = target
    out = io.BytesIO()
    dcmwrite(
        out,
        ds,
        implicit_vr=target.is_implicit_VR,
        little_endian=True,
        force_encoding=True,
    )
    return out.getvalue()


def transcode(src: Source, target: str) -> bytes:
    """Return the instance in `src` as a Part 10 file encoded in `target`.

    Raises :class:`TranscodeError` when the target is not producible or the
    source pixel data cannot be decoded/encoded.
    """
    target_uid = UID(target)
    ds = _read(src)
    source = UID(ds.file_meta.get("TransferSyntaxUID", ImplicitVRLittleEndian))
    if target_uid == source:
        if isinstance(src, bytes | bytearray):
            return bytes(src)
        return _write(ds, target_uid)
    if target_uid not in OUTPUT_SYNTAXES:
        raise TranscodeError(f"cannot encode to transfer syntax {target_uid}")
    has_pixels = _has_pixels(ds)
    try:
        if source.is_compressed:
            if not has_pixels:
                ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            elif not can_decode(source):
                raise TranscodeError(f"no decoder for transfer syntax {source}")
            else:
                ds.decompress(as_rgb=True, generate_instance_uid=False)
                _fix_pixel_vr(ds)
        else:
            _native_little_endian(ds)
        if target_uid in frame_codec.JPEG_SYNTAXES and "PixelData" in ds:
            _prepare_for_encoding(ds, target_uid)
            _compress_jpeg(ds, target_uid)
        elif target_uid in ENCODABLE_SYNTAXES and "PixelData" in ds:
            _prepare_for_encoding(ds, target_uid)
            ds.compress(target_uid, generate_instance_uid=False)
        return _write(ds, target_uid)
    except TranscodeError:
        raise
    except Exception as exc:  # codec refusals come as many exception types
        raise TranscodeError(f"cannot transcode {source} to {target_uid}: {exc}") from exc


def _compress_jpeg(ds: Dataset, target: UID) -> None:
    """Encode every frame of native ``ds`` in a JPEG process (libjpeg-turbo, DCMTK's choices)."""
    from pydicom.encaps import encapsulate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arr = pixel_array(ds, as_rgb=True)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    allocated = int(ds.BitsAllocated)
    stored = int(ds.get("BitsStored", allocated) or allocated)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    encoded = [frame_codec.encode_frame(frame, target, allocated, stored, signed, photometric)
               for frame in (arr if frames > 1 else [arr])]
    lossy = target in (frame_codec.JPEG_BASELINE, frame_codec.JPEG_EXTENDED)
    if int(ds.get("SamplesPerPixel", 1) or 1) == 3:
        ds.PhotometricInterpretation = "YBR_FULL_422" if lossy else "RGB"
        ds.PlanarConfiguration = 0
    if lossy:
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionMethod = "ISO_10918_1"
    ds.PixelData = encapsulate(encoded)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True


def _fix_pixel_vr(ds: Dataset) -> None:
    if "PixelData" in ds:
        ds["PixelData"].VR = "OB" if ds.get("BitsAllocated", 8) <= 8 else "OW"


def _prepare_for_encoding(ds: Dataset, target: UID) -> None:
    """Bring native pixel data into a form the lossless encoders accept."""
    photometric = ds.get("PhotometricInterpretation", "")
    if photometric in ("YBR_FULL_422", "YBR_PARTIAL_422", "YBR_PARTIAL_420"):
        # Encoders refuse subsampled YBR: convert to RGB first (lossless relative to the decode).
        arr = ds.pixel_array
        from pydicom.pixels import convert_color_space

        rgb = convert_color_space(arr, photometric, "RGB")
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
        ds.PixelData = rgb.astype(np.uint8).tobytes()
    if target == RLELossless and ds.get("SamplesPerPixel", 1) > 1:
        ds.PlanarConfiguration = 0


def decode_frame(src: Source | Dataset, index: int) -> tuple[np.ndarray, Dataset]:
    """Decode frame `index` (0-based) of `src`; returns (array, header dataset).

    YBR colour is converted to RGB. Only the wanted frame is decoded.
    """
    if isinstance(src, bytes | bytearray):
        src = io.BytesIO(bytes(src))
    header = Dataset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if isinstance(src, Dataset):
            arr = pixel_array(src, index=index)
            return arr, src
        try:
            arr = pixel_array(src, ds_out=header, index=index)  # type: ignore[arg-type]
        except (AttributeError, ValueError):
            # pixel_array() reads files itself and cannot inflate deflated ones, nor guess a
            # missing Type 1 element: parse fully, with the defaults Orthanc assumes
            if hasattr(src, "seek"):
                src.seek(0)  # type: ignore[union-attr]
            ds = dcmread(src, force=True)  # type: ignore[arg-type]
            _pixel_defaults(ds)
            arr = pixel_array(ds, index=index)
            del ds.PixelData
            return arr, ds
    return arr, header


def _pixel_defaults(ds: Dataset) -> None:
    """Fill Type 1 pixel description elements that some files omit (as Orthanc does)."""
    allocated = int(ds.get("BitsAllocated", 8) or 8)
    defaults = {"SamplesPerPixel": 1, "PhotometricInterpretation": "MONOCHROME2",
                "PixelRepresentation": 0, "BitsStored": allocated}
    for keyword, value in defaults.items():
        if keyword not in ds or ds[keyword].value in (None, ""):
            setattr(ds, keyword, value)
    if "HighBit" not in ds:
        ds.HighBit = int(ds.BitsStored) - 1


def frame_native_bytes(arr: np.ndarray, bits_allocated: int) -> bytes:
    """Native little endian bytes of one decoded frame (for octet-stream)."""
    if bits_allocated == 1:
        return pack_bits(arr)
    return arr.astype(arr.dtype.newbyteorder("<")).tobytes()


def encoder_accepts(target: str, bits_allocated: int | None, bits_stored: int | None,
                    samples: int | None = 1) -> bool:
    """Whether the encoder of ``target`` takes pixels of this shape (checked before streaming).

    Native targets take anything; the lossless encoders take 8- and 16-bit samples
    (pydicom's RLE encoder, pyjpegls and openjpeg refuse 1- and 32-bit data).
    """
    if target not in ENCODABLE_SYNTAXES:
        return target in OUTPUT_SYNTAXES
    if bits_allocated is None:
        return True  # no pixel data
    if target in frame_codec.JPEG_SYNTAXES:
        return frame_codec.can_encode(target, bits_allocated, bits_stored, samples)
    if bits_allocated not in (8, 16):
        return False
    return bits_stored is None or 1 <= bits_stored <= 16


_FAST_HEADER = {
    "00280010": "Rows", "00280011": "Columns", "00280002": "SamplesPerPixel",
    "00280004": "PhotometricInterpretation", "00280006": "PlanarConfiguration",
    "00280100": "BitsAllocated", "00280101": "BitsStored", "00280102": "HighBit",
    "00280103": "PixelRepresentation", "00280008": "NumberOfFrames",
    "00281053": "RescaleSlope", "00281052": "RescaleIntercept", "00281050": "WindowCenter",
    "00281051": "WindowWidth", "00281056": "VOILUTFunction", "00181063": "FrameTime",
}
#: Elements that need the full dataset to render (LUTs, functional groups, palettes).
_SLOW_TAGS = ("00283000", "00283010", "52009229", "52009230", "00281201", "00281101")


def header_from_json(metadata: dict) -> Dataset | None:
    """A small header for rendering, built from stored DICOM JSON; None when the image needs
    the full dataset (LUT sequences, functional groups, palette colour)."""
    if any(tag in metadata for tag in _SLOW_TAGS):
        return None
    ds = Dataset()
    for tag, keyword in _FAST_HEADER.items():
        values = metadata.get(tag, {}).get("Value")
        if not values:
            continue
        setattr(ds, keyword, values if len(values) > 1 else values[0])
    if "Rows" not in ds or "Columns" not in ds or "BitsAllocated" not in ds:
        return None
    return ds


def decode_stored_frame(data: bytes, header: Dataset, transfer_syntax: str,
                        exact: bool = False) -> np.ndarray | None:
    """Decode one frame's stored bytes without parsing the file, for the common cases.

    Native little endian grey/RGB data becomes an array directly; JPEG baseline frames are
    decoded by Pillow (libjpeg, YCbCr to RGB in C; within a few levels of pydicom's decode,
    fine for display) unless ``exact``; other codecs decode the fragment through pydicom
    without reading the file. Returns None when the file must be decoded by pydicom.
    """
    rows, cols = int(header.Rows), int(header.Columns)
    samples = int(header.get("SamplesPerPixel", 1) or 1)
    bits = int(header.BitsAllocated)
    photometric = str(header.get("PhotometricInterpretation", ""))
    signed = int(header.get("PixelRepresentation", 0) or 0) == 1
    stored = int(header.get("BitsStored", bits) or bits)
    if transfer_syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
        if bits not in (8, 16, 32) or (signed and stored != bits):
            return None
        if photometric not in ("MONOCHROME1", "MONOCHROME2", "RGB"):
            return None
        dtype = np.dtype(f"<{'i' if signed else 'u'}{bits // 8}")
        count = rows * cols * samples
        if len(data) < count * dtype.itemsize:
            return None
        arr = np.frombuffer(data, dtype, count)
        if samples == 1:
            return arr.reshape(rows, cols)
        if int(header.get("PlanarConfiguration", 0) or 0) == 1:
            return arr.reshape(samples, rows, cols).transpose(1, 2, 0)
        return arr.reshape(rows, cols, samples)
    if transfer_syntax == "1.2.840.10008.1.2.4.50" and bits == 8 and not exact:
        if not ((samples == 3 and photometric in ("YBR_FULL_422", "YBR_FULL"))
                or (samples == 1 and photometric in ("MONOCHROME1", "MONOCHROME2"))):
            return None
        from PIL import Image

        try:
            image = Image.open(io.BytesIO(data))
            image.load()
        except Exception:
            return None
        if image.size != (cols, rows) or image.mode not in ("RGB", "L"):
            return None
        return np.asarray(image)
    if UID(transfer_syntax).is_compressed and can_decode(transfer_syntax):
        # Any other codec: decode the stored fragment(s) in a synthetic one-frame dataset.
        from pydicom.dataset import FileMetaDataset
        from pydicom.encaps import encapsulate

        if photometric == "PALETTE COLOR":
            return None
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = transfer_syntax
        for keyword in ("Rows", "Columns", "SamplesPerPixel", "PhotometricInterpretation",
                        "PlanarConfiguration", "BitsAllocated", "BitsStored", "HighBit",
                        "PixelRepresentation"):
            if keyword in header:
                setattr(ds, keyword, header[keyword].value)
        ds.NumberOfFrames = 1
        ds.PixelData = encapsulate([data])
        ds["PixelData"].VR = "OB"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return pixel_array(ds)
        except Exception:
            return None
    return None
