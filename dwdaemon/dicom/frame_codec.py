"""Encoding of one decoded frame into a compressed transfer syntax (pure; no Twisted).

Used when WADO-RS frames are asked in a compressed syntax other than the stored one
(PS3.18 8.7.3.3.2, Table 8.7.3-5). The JPEG family (baseline 4.50, extended 4.51, lossless
4.57 and 4.70) is written by libjpeg-turbo through ``imagecodecs``: quality 90, standard Huffman
tables for the lossy processes, predictor 1 (4.70) or 6 (4.57) for the lossless ones. An
odd-length JPEG stream gets one 0xFF fill byte before its EOI marker (PS3.5 A.4: fragments
have even lengths). These are the choices of DCMTK, which Orthanc uses: the bytes are the same.
JPEG-LS (4.80), JPEG 2000 (4.90) and RLE (1.2.5) go through pydicom's encoders.
"""

from __future__ import annotations

import functools

import numpy as np
from pydicom import uid

__all__ = ["JPEG_SYNTAXES", "can_encode", "encode_frame", "FrameEncodeError"]

JPEG_BASELINE = uid.JPEGBaseline8Bit
JPEG_EXTENDED = uid.JPEGExtended12Bit
JPEG_LOSSLESS = uid.JPEGLossless
JPEG_LOSSLESS_SV1 = uid.JPEGLosslessSV1
JPEG_SYNTAXES = frozenset({JPEG_BASELINE, JPEG_EXTENDED, JPEG_LOSSLESS, JPEG_LOSSLESS_SV1})
JPEG_LS_LOSSLESS = uid.JPEGLSLossless
J2K_LOSSLESS = uid.JPEG2000Lossless
RLE_LOSSLESS = uid.RLELossless
_PYDICOM_SYNTAXES = frozenset({JPEG_LS_LOSSLESS, J2K_LOSSLESS, RLE_LOSSLESS})
JPEG_QUALITY = 90


class FrameEncodeError(ValueError):
    """The frame cannot be encoded in the asked transfer syntax."""


@functools.cache
def _imagecodecs_jpeg() -> bool:
    try:
        import imagecodecs
    except ImportError:
        return False
    return bool(imagecodecs.JPEG8.available)


@functools.cache
def _pydicom_encoder(syntax: str) -> bool:
    from pydicom.pixels import get_encoder

    try:
        return bool(get_encoder(syntax).is_available)
    except (NotImplementedError, ValueError):
        return False


def can_encode(syntax: str, bits_allocated: int | None = None, bits_stored: int | None = None,
               samples: int | None = 1) -> bool:
    """Whether a frame of this shape can be encoded in ``syntax`` here."""
    bits_allocated = bits_allocated or 8
    bits_stored = bits_stored or bits_allocated
    samples = samples or 1
    if samples not in (1, 3) or bits_allocated not in (8, 16):
        return False
    if syntax in JPEG_SYNTAXES:
        if not _imagecodecs_jpeg():
            return False
        if syntax == JPEG_BASELINE:
            return bits_stored <= 8
        if syntax == JPEG_EXTENDED:
            return bits_stored <= 12
        return bits_stored <= 16
    if syntax in _PYDICOM_SYNTAXES:
        return _pydicom_encoder(syntax)
    return False


def _pad_jpeg(data: bytes) -> bytes:
    """Even length: one 0xFF fill byte before the final EOI marker (a legal JPEG fill)."""
    if len(data) % 2 and data.endswith(b"\xff\xd9"):
        return data[:-2] + b"\xff\xff\xd9"
    return data


def _unsigned(arr: np.ndarray, bits_stored: int) -> np.ndarray:
    """Stored values as unsigned integers of ``bits_stored`` bits (two's complement kept)."""
    unsigned = arr.view(arr.dtype.newbyteorder("=").str.replace("i", "u")) \
        if arr.dtype.kind == "i" else arr
    if bits_stored < unsigned.dtype.itemsize * 8:
        unsigned = unsigned & np.asarray((1 << bits_stored) - 1, unsigned.dtype)
    return np.ascontiguousarray(unsigned)


def _encode_jpeg(arr: np.ndarray, syntax: str, bits_stored: int) -> bytes:
    import imagecodecs

    data = _unsigned(arr, bits_stored)
    if syntax in (JPEG_LOSSLESS, JPEG_LOSSLESS_SV1):
        out = imagecodecs.jpeg8_encode(
            data, lossless=True, predictor=1 if syntax == JPEG_LOSSLESS_SV1 else 6,
            bitspersample=max(2, bits_stored))
        return _pad_jpeg(bytes(out))
    precision = 8 if bits_stored <= 8 else 12
    if precision == 8 and data.dtype != np.uint8:
        data = data.astype(np.uint8)
    kwargs = {"subsampling": "422"} if data.ndim == 3 else {}
    out = bytes(imagecodecs.jpeg8_encode(data, level=JPEG_QUALITY, bitspersample=precision,
                                         **kwargs))
    if syntax == JPEG_EXTENDED and precision == 8:
        # 8-bit data in process 2: the same stream, marked extended sequential (SOF1)
        sof = out.find(b"\xff\xc0")
        if sof >= 0:
            out = out[:sof] + b"\xff\xc1" + out[sof + 2:]
    return _pad_jpeg(out)


def encode_frame(arr: np.ndarray, syntax: str, bits_allocated: int, bits_stored: int,
                 signed: bool = False, photometric: str | None = None) -> bytes:
    """Encode one decoded frame (``HxW`` or ``HxWx3``, colour as RGB) in ``syntax``."""
    samples = 3 if arr.ndim == 3 else 1
    if not can_encode(syntax, bits_allocated, bits_stored, samples):
        raise FrameEncodeError(f"cannot encode {bits_stored}-bit, {samples}-sample frames "
                               f"as {syntax}")
    try:
        if syntax in JPEG_SYNTAXES:
            return _encode_jpeg(arr, syntax, bits_stored)
        from pydicom.pixels import get_encoder

        if samples == 3:
            photometric = "RGB"
        elif photometric not in ("MONOCHROME1", "MONOCHROME2"):
            photometric = "MONOCHROME2"
        data = get_encoder(syntax).encode(
            np.ascontiguousarray(arr), rows=arr.shape[0], columns=arr.shape[1],
            samples_per_pixel=samples, bits_allocated=bits_allocated, bits_stored=bits_stored,
            pixel_representation=1 if signed else 0, photometric_interpretation=photometric,
            number_of_frames=1, planar_configuration=0)
        return data + b"\0" if len(data) % 2 else data
    except FrameEncodeError:
        raise
    except Exception as exc:  # codec refusals come as many exception types
        raise FrameEncodeError(f"cannot encode the frame as {syntax}: {exc}") from exc
