"""``dwdaemon verify``: the stored files against the index, after a disk incident.

For each indexed instance the file is read whole: it must exist, have the indexed size and
checksum (XXH3-128; MD5 for files stored before 2026-12-04), and hold the indexed Study, Series
and SOP Instance UIDs. Files of the storage area that no index row names are orphans; files
left in the temporary folder are leftovers of interrupted writes. ``--remove-orphans`` deletes
both. Nothing else is changed.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

from dwdaemon.cli import exitcodes
from dwdaemon.store.index.base import Index
from dwdaemon.store.storage import CHECKSUM_PREFIX, file_checksum, is_temp_name


@dataclass
class Report:
    instances: int = 0
    files: int = 0
    ok: int = 0
    missing: list[str] = field(default_factory=list)  #: instance ids whose file is gone
    corrupt: list[dict[str, str]] = field(default_factory=list)  #: size/MD5/UID mismatches
    orphans: list[str] = field(default_factory=list)  #: stored files the index does not name
    temporary: list[str] = field(default_factory=list)  #: leftovers in the .tmp folder
    removed: int = 0

    @property
    def problems(self) -> int:
        return len(self.missing) + len(self.corrupt) + len(self.orphans) + len(self.temporary)

    def lines(self) -> list[str]:
        out = [f"indexed instances: {self.instances}", f"stored files: {self.files}",
               f"consistent: {self.ok}", f"missing files: {len(self.missing)}",
               f"corrupt files: {len(self.corrupt)}", f"orphan files: {len(self.orphans)}",
               f"temporary leftovers: {len(self.temporary)}"]
        out += [f"  missing: instance {i}" for i in self.missing]
        out += [f"  corrupt: instance {c['instance']} file {c['file']}: {c['problem']}"
                for c in self.corrupt]
        out += [f"  orphan: {path}" for path in self.orphans]
        out += [f"  temporary: {path}" for path in self.temporary]
        if self.removed:
            out.append(f"removed: {self.removed} orphan and temporary files")
        return out


def _checksum(path: str, indexed: str) -> tuple[int, str]:
    with open(path, "rb") as fp:
        return file_checksum(fp, indexed)


def _uids(path: str) -> tuple[str, str, str]:
    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=[
            "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"])
    return (str(ds.get("StudyInstanceUID", "")).strip(),
            str(ds.get("SeriesInstanceUID", "")).strip(),
            str(ds.get("SOPInstanceUID", "")).strip())


def check_instance(storage: Any, row: Any) -> str | None:
    """The problem of one indexed instance's file (``None`` when consistent)."""
    path = storage.path(row.file_uuid)
    size, checksum = _checksum(path, row.file_md5)
    if size != row.file_size:
        return f"size {size}, indexed {row.file_size}"
    if checksum != row.file_md5:
        kind = "checksum" if checksum.startswith(CHECKSUM_PREFIX) else "MD5"
        return f"{kind} {checksum}, indexed {row.file_md5}"
    try:
        uids = _uids(path)
    except Exception as exc:
        return f"not readable as DICOM: {exc}"
    expected = (row.study_uid, row.series_uid, row.sop_uid)
    names = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
    for name, got, want in zip(names, uids, expected, strict=True):
        if got != want:
            return f"{name} {got!r}, indexed {want!r}"
    return None


def verify(storage: Any, index: Index, remove: bool = False, progress: Any = None) -> Report:
    """Check ``storage`` against ``index`` (blocking)."""
    report = Report()
    ids = index.list_ids("instances")
    report.instances = len(ids)
    known: set[str] = set()
    for public_id in ids:
        row = index.instance(public_id)
        if progress is not None:
            progress.update(1)
        if row is None:  # deleted meanwhile
            continue
        known.add(row.file_uuid)
        if not storage.exists(row.file_uuid):
            report.missing.append(public_id)
            continue
        problem = check_instance(storage, row)
        if problem is None:
            report.ok += 1
        else:
            report.corrupt.append({"instance": public_id, "file": row.file_uuid,
                                   "problem": problem})
    temporary = []
    for directory, file_uuid in sorted(storage.iter_names()):
        path = os.path.join(directory, file_uuid)
        if not os.path.isfile(path):
            continue
        if is_temp_name(file_uuid):  # an interrupted (or running) write
            temporary.append(path)
            continue
        report.files += 1
        if file_uuid not in known or path != storage.path(file_uuid):
            report.orphans.append(path)
    if os.path.isdir(storage.tmp):
        temporary += [os.path.join(storage.tmp, n) for n in os.listdir(storage.tmp)]
    report.temporary = sorted(temporary)
    if remove:
        from dwdaemon.store.storage import discard

        for path in report.orphans + report.temporary:
            discard(path)
            report.removed += 1
    return report


def run_verify(args: Any) -> int:
    from tqdm import tqdm

    from dwdaemon.config import ConfigError, load_config
    from dwdaemon.store.storage import StorageArea
    from dwdaemon.tap import build_index

    try:
        config, _ = load_config(args.config)
    except (ConfigError, OSError) as exc:
        print(f"configuration: {exc}", file=sys.stderr)
        return exitcodes.FATAL
    if not os.path.isdir(config.storage_directory):
        print(f"no storage area at {config.storage_directory}", file=sys.stderr)
        return exitcodes.FATAL
    storage = StorageArea(config.storage_directory)
    try:
        index, _ = build_index(config)
        index.open()
    except Exception as exc:
        print(f"cannot open the index: {exc}", file=sys.stderr)
        return exitcodes.FATAL
    try:
        total = index.statistics().get("instances", 0)
        with tqdm(total=total, unit="inst", desc="verify", disable=args.quiet,
                  file=sys.stderr) as bar:
            report = verify(storage, index, args.remove_orphans, bar)
    finally:
        index.close()
    if args.json:
        json.dump({**asdict(report), "problems": report.problems}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print("\n".join(report.lines()))
    return exitcodes.PARTIAL if report.problems else exitcodes.OK
