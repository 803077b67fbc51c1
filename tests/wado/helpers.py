"""Shared helpers for the WADO tests: pydicom's shipped files and generated datasets."""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

TEST_FILES = os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files")


def path(name: str) -> str:
    """Absolute path of one of pydicom's shipped test files (never downloads)."""
    full = os.path.join(TEST_FILES, name)
    if not os.path.exists(full):
        raise FileNotFoundError(full)
    return full


def read(name: str) -> Dataset:
    """Read a shipped test file with warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path(name))


def reference_pixels(name: str) -> np.ndarray:
    """pydicom's own decode of a shipped file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path(name)).pixel_array


def make_image(pixels: np.ndarray, photometric: str = "MONOCHROME2", signed: bool = False,
               frames: int = 1, study: str | None = None, series: str | None = None,
               **attrs: object) -> bytes:
    """A minimal Part 10 image (Explicit VR Little Endian) around ``pixels``."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study or generate_uid()
    ds.SeriesInstanceUID = series or generate_uid()
    ds.PatientID = "WADO"
    ds.PatientName = "Wado^Test"
    ds.Modality = "OT"
    samples = 3 if pixels.ndim == (4 if frames > 1 else 3) else 1
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    if samples == 3:
        ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = pixels.shape[-3:-1] if samples == 3 else pixels.shape[-2:]
    if frames > 1:
        ds.NumberOfFrames = frames
    bits = pixels.dtype.itemsize * 8
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 1 if signed else 0
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.PixelData = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
    ds["PixelData"].VR = "OW" if bits > 8 else "OB"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def split_multipart(content_type: str, body: bytes) -> list[tuple[dict[str, str], bytes]]:
    """Parts ``(headers with lowercased names, payload)`` of a multipart/related body."""
    from dwdaemon.dicom.mediatypes import parse_media_type

    mtype, params = parse_media_type(content_type)
    assert mtype == "multipart/related", content_type
    delimiter = b"--" + params["boundary"].encode()
    chunks = body.split(b"\r\n" + delimiter)
    first = chunks[0]
    assert first.startswith(delimiter), first[:80]
    chunks[0] = first[len(delimiter):]
    parts = []
    for chunk in chunks:
        if chunk.startswith(b"--"):
            break
        head, _, payload = chunk.partition(b"\r\n\r\n")
        headers = {}
        for line in head.split(b"\r\n"):
            if b":" in line:
                name, _, value = line.partition(b":")
                headers[name.strip().lower().decode()] = value.strip().decode()
        parts.append((headers, payload))
    return parts


def nested_bulk_file() -> bytes:
    """A small image whose sequence item holds a 2000-byte OB value (a nested bulk value)."""
    pixels = np.arange(16 * 16, dtype=np.uint16).reshape(16, 16)
    data = make_image(pixels)
    ds = pydicom.dcmread(io.BytesIO(data))
    item = Dataset()
    item.add_new(0x00420011, "OB", (bytes(range(256)) * 8)[:2000])  # 2000-byte OB
    ds.add_new(0x00400555, "SQ", [item])  # AcquisitionContextSequence
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()
