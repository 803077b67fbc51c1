"""``dwdaemon import``: bulk import of folders, files and zip files, with progress and resume.

Files are found by walking the paths (zip members too), read one at a time and checked on the
client (a file without a SOP Instance UID is "not DICOM" and skipped). Then either:

- STOW-RS (``--url``): instances go in batches (``--batch`` instances, ``--batch-mb``); before a
  batch is sent, one QIDO-RS request asks which of its SOP Instance UIDs are already stored,
  and those are counted as "already stored" and not sent again;
- the store of a stopped daemon (``--store CONFIG``): each file goes through the daemon's own
  ingest path (:meth:`dwdaemon.store.store.Store.ingest_path`: parse, temp file, fsync, rename,
  index), which tells "Success" from "AlreadyStored".

With ``--journal FILE`` each file stored is recorded (path, size, modification time; zip
member names) and skipped when the command is run again, so an interrupted import resumes.
"""

from __future__ import annotations

import base64
import io
import json
import os
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
import warnings
import zipfile
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from dwdaemon.cli import exitcodes

#: Names of the STOW-RS failure reasons (PS3.18 table 10.5.3-2).
REASONS = {0xC000: "cannot understand", 0xA900: "belongs to another study",
           0xA700: "out of resources", 0xC122: "transfer syntax not supported",
           0x0110: "processing failure", 0x0122: "SOP class not supported",
           0x0124: "not authorized"}


class FatalError(Exception):
    """The import cannot go on (server unreachable or refusing every request)."""


@dataclass
class Item:
    """A file to import (or a member of a zip file)."""

    key: str  #: journal key: path (or zip path + member), size and mtime
    label: str  #: shown to the user
    size: int
    read: Callable[[], bytes]


@dataclass
class Summary:
    stored: int = 0
    already: int = 0
    journal: int = 0
    not_dicom: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)  # (label, reason)

    def exit_code(self) -> int:
        return exitcodes.PARTIAL if self.refused or self.not_dicom else exitcodes.OK

    def lines(self, verbose: bool) -> list[str]:
        out = [f"stored: {self.stored}", f"already stored: {self.already}",
               f"skipped (journal): {self.journal}", f"not DICOM: {self.not_dicom}",
               f"refused: {len(self.refused)}"]
        reasons = Counter(reason for _, reason in self.refused)
        for reason, count in reasons.most_common():
            out.append(f"  {count} x {reason}")
        shown = self.refused if verbose else self.refused[:20]
        for label, reason in shown:
            out.append(f"  {label}: {reason}")
        if len(shown) < len(self.refused):
            out.append(f"  ... {len(self.refused) - len(shown)} more (--verbose lists them)")
        return out


# -- finding files ------------------------------------------------------------------------------

def _file_item(path: str) -> Item:
    st = os.stat(path)

    def read() -> bytes:
        with open(path, "rb") as fp:
            return fp.read()

    return Item(f"{path}\t{st.st_size}\t{st.st_mtime_ns}", path, st.st_size, read)


def _zip_items(path: str) -> Iterator[Item]:
    st = os.stat(path)
    with zipfile.ZipFile(path) as archive:
        infos = [i for i in archive.infolist() if not i.is_dir()]
    for info in infos:
        def read(name: str = info.filename) -> bytes:
            with zipfile.ZipFile(path) as archive:
                return archive.read(name)

        yield Item(f"{path}::{info.filename}\t{st.st_size}\t{st.st_mtime_ns}",
                   f"{path}::{info.filename}", info.file_size, read)


def find_items(paths: list[str]) -> Iterator[Item]:
    """Every file under ``paths`` (folders walked in name order; zip files opened)."""
    for top in paths:
        top = os.path.abspath(top)
        if os.path.isdir(top):
            for directory, dirs, files in os.walk(top):
                dirs.sort()
                for name in sorted(files):
                    yield from _items_of(os.path.join(directory, name))
        elif os.path.exists(top):
            yield from _items_of(top)
        else:
            raise FileNotFoundError(top)


def _items_of(path: str) -> Iterator[Item]:
    if path.lower().endswith(".zip") and zipfile.is_zipfile(path):
        try:
            yield from _zip_items(path)
            return
        except (zipfile.BadZipFile, OSError):
            pass  # reported as a file that is not DICOM
    yield _file_item(path)


def sop_instance_uid(data: bytes) -> str | None:
    """The SOP Instance UID of a DICOM file (``None`` when it is not DICOM)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True,
                                 force=data[128:132] != b"DICM",
                                 specific_tags=["SOPInstanceUID", "MediaStorageSOPInstanceUID"])
    except (InvalidDicomError, ValueError, EOFError, OSError, KeyError, TypeError,
            AttributeError, NotImplementedError):
        return None
    uid = getattr(ds, "SOPInstanceUID", None) or getattr(
        getattr(ds, "file_meta", None), "MediaStorageSOPInstanceUID", None)
    return str(uid).strip() if uid else None


# -- journal ------------------------------------------------------------------------------------

class Journal:
    """Keys of the files stored by earlier runs (one line each, appended as we go)."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.done: set[str] = set()
        self._fp: Any = None
        if path and os.path.exists(path):
            with open(path, encoding="utf-8") as fp:
                self.done = {line.rstrip("\n") for line in fp if line.strip()}
        if path:
            self._fp = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the whole run

    def add(self, keys: list[str]) -> None:
        if self._fp is not None and keys:
            self._fp.write("".join(k + "\n" for k in keys))
            self._fp.flush()
            os.fsync(self._fp.fileno())

    def close(self) -> None:
        if self._fp is not None:
            self._fp.close()


# -- STOW-RS ------------------------------------------------------------------------------------

class StowTarget:
    """Sends batches by STOW-RS; asks QIDO-RS first which instances are stored already."""

    def __init__(self, url: str, user: str | None, timeout: float, insecure: bool) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.headers: dict[str, str] = {}
        if user:
            token = base64.b64encode(user.encode("utf-8")).decode("ascii")
            self.headers["Authorization"] = f"Basic {token}"
        self.context: ssl.SSLContext | None = None
        if insecure:  # no certificate or host name check (``--insecure``)
            self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            self.context.check_hostname = False
            self.context.verify_mode = ssl.CERT_NONE

    def _call(self, request: urllib.request.Request) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(request, timeout=self.timeout,
                                        context=self.context) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except (urllib.error.URLError, OSError) as exc:
            raise FatalError(f"cannot reach {self.url}: {getattr(exc, 'reason', exc)}") from exc

    def stored_already(self, uids: list[str]) -> set[str]:
        """Which of ``uids`` the server has (one QIDO-RS request; empty set if it fails)."""
        query = urllib.parse.urlencode({"SOPInstanceUID": ",".join(uids),
                                        "includefield": "00080018", "limit": "0"})
        request = urllib.request.Request(f"{self.url}/instances?{query}", headers={
            **self.headers, "Accept": "application/dicom+json"})
        status, body = self._call(request)
        if status in (401, 403):
            raise FatalError(f"{self.url}: HTTP {status} (check --user)")
        if status != 200 or not body:
            return set()
        try:
            return {d["00080018"]["Value"][0] for d in json.loads(body) if "00080018" in d}
        except (ValueError, KeyError, IndexError, TypeError):
            return set()

    def send(self, batch: list[tuple[Item, bytes, str]]) -> dict[str, str | None]:
        """STOW-RS of a batch: ``{sop_uid: None (stored) or failure reason}``."""
        boundary = uuid.uuid4().hex
        chunks = []
        for _, data, _ in batch:
            chunks += [b"--", boundary.encode(), b"\r\nContent-Type: application/dicom\r\n\r\n",
                       data, b"\r\n"]
        chunks += [b"--", boundary.encode(), b"--\r\n"]
        request = urllib.request.Request(
            f"{self.url}/studies", data=b"".join(chunks), method="POST", headers={
                **self.headers, "Accept": "application/dicom+json",
                "Content-Type": f'multipart/related; type="application/dicom"; '
                                f"boundary={boundary}"})
        status, body = self._call(request)
        if status in (200, 202, 409):
            return _stow_outcome(body, [uid for _, _, uid in batch])
        message = _message(body)
        if status in (401, 403):
            raise FatalError(f"{self.url}: HTTP {status} (check --user){message}")
        if status == 413:
            raise FatalError(f"{self.url}: HTTP 413, request too large: lower --batch-mb{message}")
        if status == 400:
            return {uid: f"HTTP 400{message}" for _, _, uid in batch}
        raise FatalError(f"{self.url}: HTTP {status}{message}")


def _message(body: bytes) -> str:
    try:
        doc = json.loads(body)
        return f": {doc.get('Message') or doc.get('Details') or ''}"
    except (ValueError, AttributeError):
        return ""


def _stow_outcome(body: bytes, uids: list[str]) -> dict[str, str | None]:
    try:
        doc = json.loads(body) if body else {}
    except ValueError:
        doc = {}
    if isinstance(doc, list):
        doc = doc[0] if doc else {}
    out: dict[str, str | None] = {}
    for item in (doc.get("00081199") or {}).get("Value", []):
        uid = (item.get("00081155") or {}).get("Value", [None])[0]
        if uid:
            out[uid] = None
    anonymous = []
    for item in (doc.get("00081198") or {}).get("Value", []):
        uid = (item.get("00081155") or {}).get("Value", [None])[0]
        code = (item.get("00081197") or {}).get("Value", [0x0110])[0]
        reason = f"{REASONS.get(code, 'failure')} (0x{code:04X})"
        if uid:
            out[uid] = reason
        else:
            anonymous.append(reason)
    for uid in uids:
        if uid not in out:
            out[uid] = anonymous.pop(0) if anonymous else "not in the STOW-RS answer"
    return out


# -- store of a stopped daemon ------------------------------------------------------------------

class StoreTarget:
    """Writes through the daemon's ingest path into the store of a configuration."""

    def __init__(self, config_path: str) -> None:
        from dwdaemon.config import ConfigError, load_config
        from dwdaemon.store.storage import StorageArea
        from dwdaemon.store.store import Store
        from dwdaemon.tap import build_index
        from dwdaemon.threads import ThreadPools

        try:
            config, _ = load_config(config_path)
        except (ConfigError, OSError) as exc:
            raise FatalError(f"configuration: {exc}") from exc
        os.makedirs(config.storage_directory, exist_ok=True)
        os.makedirs(config.index_directory, exist_ok=True)
        index, min_age = build_index(config)
        storage = StorageArea(config.storage_directory,
                              recent_cache_bytes=config.recently_stored_cache_size << 20)
        self.store = Store(storage, index,
                           ThreadPools(synchronous=True), overwrite=config.overwrite_instances,
                           orphan_min_age=min_age)
        try:
            self.store.open()
        except Exception as exc:
            raise FatalError(f"cannot open the store: {exc}") from exc

    def ingest(self, data: bytes) -> tuple[str, str | None]:
        """``("Success" | "AlreadyStored" | "Refused", reason)``."""
        from dwdaemon.store.ingest import IngestError

        outcome: list[Any] = []
        d = self.store.ingest_bytes(data)
        d.addBoth(outcome.append)
        result = outcome[0]
        if hasattr(result, "value"):  # a Failure
            exc = result.value
            if isinstance(exc, IngestError):
                code = getattr(exc, "reason", 0xC000)
                return "Refused", f"{REASONS.get(code, 'failure')} (0x{code:04X}): {exc}"
            raise FatalError(f"store: {exc}")
        return result.status, None

    def close(self) -> None:
        self.store.close()


# -- the command --------------------------------------------------------------------------------

def run_import(args: Any) -> int:
    from tqdm import tqdm

    try:
        items = list(find_items(args.paths))
    except FileNotFoundError as exc:
        print(f"no such file or folder: {exc}", file=sys.stderr)
        return exitcodes.FATAL
    journal = Journal(args.journal)
    summary = Summary()
    todo = []
    for item in items:
        if item.key in journal.done:
            summary.journal += 1
        else:
            todo.append(item)
    bar = tqdm(total=sum(i.size for i in todo), unit="B", unit_scale=True, unit_divisor=1024,
               desc="import", disable=args.quiet, file=sys.stderr, dynamic_ncols=True)
    code = exitcodes.OK
    try:
        if args.store:
            _import_store(args, todo, journal, summary, bar)
        else:
            _import_stow(args, todo, journal, summary, bar)
    except FatalError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        code = exitcodes.FATAL
    except KeyboardInterrupt:
        code = exitcodes.INTERRUPTED
    finally:
        bar.close()
        journal.close()
    print("\n".join(summary.lines(args.verbose)))
    if code == exitcodes.INTERRUPTED:
        print("interrupted" + (" (run again with the same --journal to resume)"
                               if args.journal else ""), file=sys.stderr)
    return code if code != exitcodes.OK else summary.exit_code()


def _import_store(args: Any, todo: list[Item], journal: Journal, summary: Summary,
                  bar: Any) -> None:
    target = StoreTarget(args.store)
    try:
        for item in todo:
            data = item.read()
            status, reason = target.ingest(data)
            if status == "Refused":
                if sop_instance_uid(data) is None:
                    summary.not_dicom += 1
                else:
                    summary.refused.append((item.label, reason or ""))
            else:
                if status == "AlreadyStored":
                    summary.already += 1
                else:
                    summary.stored += 1
                journal.add([item.key])
            bar.update(item.size)
            bar.set_postfix(stored=summary.stored, refused=len(summary.refused), refresh=False)
    finally:
        target.close()


def _import_stow(args: Any, todo: list[Item], journal: Journal, summary: Summary,
                 bar: Any) -> None:
    """Read and check files in this thread; ``--parallel`` batches travel at once."""
    target = StowTarget(args.url, args.user, args.timeout, args.insecure)
    limit = max(1, int(args.batch_mb * 1024 * 1024))
    parallel = max(1, args.parallel)
    batch: list[tuple[Item, bytes, str]] = []
    size = 0
    in_flight: deque[Future[Any]] = deque()

    def exchange(entries: list[tuple[Item, bytes, str]]) -> tuple[list[Any], set[str], dict]:
        """Network only (worker thread): what is stored already, then STOW-RS of the rest."""
        have = target.stored_already([uid for _, _, uid in entries])
        send = [entry for entry in entries if entry[2] not in have]
        return entries, have, target.send(send) if send else {}

    def settle(future: Future[Any]) -> None:
        """Count the outcome of a batch (this thread, in submission order)."""
        entries, have, outcome = future.result()
        done = []
        for item, _, uid in entries:
            if uid in have:
                summary.already += 1
                done.append(item.key)
            elif outcome.get(uid) is None:
                summary.stored += 1
                done.append(item.key)
            else:
                summary.refused.append((item.label, outcome[uid]))
        journal.add(done)
        bar.update(sum(entry[0].size for entry in entries))
        bar.set_postfix(stored=summary.stored, refused=len(summary.refused), refresh=False)

    def flush() -> None:
        nonlocal batch, size
        if batch:
            in_flight.append(pool.submit(exchange, batch))
            batch, size = [], 0
        while len(in_flight) >= parallel:
            settle(in_flight.popleft())

    pool = ThreadPoolExecutor(parallel, thread_name_prefix="dwdaemon-import")
    try:
        for item in todo:
            try:
                data = item.read()
            except OSError as exc:
                summary.refused.append((item.label, f"unreadable: {exc}"))
                bar.update(item.size)
                continue
            uid = sop_instance_uid(data)
            if uid is None:
                summary.not_dicom += 1
                bar.update(item.size)
                continue
            if batch and (len(batch) >= args.batch or size + len(data) > limit
                          or uid in {entry[2] for entry in batch}):
                flush()  # (one SOP Instance UID per batch: the answer names instances by UID)
            batch.append((item, data, uid))
            size += len(data)
        flush()
        while in_flight:
            settle(in_flight.popleft())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
