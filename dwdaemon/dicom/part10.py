"""Raw data sets (no preamble, no file meta information) made into Part 10 files (pure).

Orthanc stores a data set sent without its Part 10 header (e.g. an Implicit VR Little Endian
file written by an old modality): the file meta information is built from the data set
(SOP Class/Instance UID) and the encoding pydicom recognises.
"""

from __future__ import annotations

import os
import shutil
import warnings

from pydicom import uid

__all__ = ["add_file_meta"]

_IMPLICIT_LE = uid.ImplicitVRLittleEndian
_EXPLICIT_LE = uid.ExplicitVRLittleEndian
_EXPLICIT_BE = uid.ExplicitVRBigEndian


def add_file_meta(path: str) -> bool:
    """Rewrite ``path`` as a Part 10 file when it holds a raw data set; True if rewritten.

    Files that already have the ``DICM`` prefix, and data that pydicom cannot read as a data
    set with SOP Class and Instance UIDs, are left alone (the caller's parse reports them).
    """
    with open(path, "rb") as fp:
        head = fp.read(132)
    if len(head) < 8 or head[128:132] == b"DICM":
        return False
    from pydicom import dcmread
    from pydicom.dataset import FileMetaDataset
    from pydicom.filewriter import write_file_meta_info

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = dcmread(path, force=True, stop_before_pixels=True)
            sop_class, sop_uid = str(ds.SOPClassUID), str(ds.SOPInstanceUID)
    except Exception:  # not a data set at all: the caller's parse says why
        return False
    if "TransferSyntaxUID" in getattr(ds, "file_meta", {}):
        return False
    implicit, little = getattr(ds, "original_encoding", (True, True))
    syntax = _IMPLICIT_LE if implicit else (_EXPLICIT_LE if little else _EXPLICIT_BE)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = syntax
    wrapped = path + ".part10"
    try:
        with open(wrapped, "wb") as out, open(path, "rb") as src:
            out.write(b"\0" * 128 + b"DICM")
            write_file_meta_info(out, meta, enforce_standard=True)
            shutil.copyfileobj(src, out, 1 << 20)
        os.replace(wrapped, path)
    finally:
        if os.path.exists(wrapped):
            os.remove(wrapped)
    return True
