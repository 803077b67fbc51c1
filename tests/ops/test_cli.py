"""The ``dwdaemon`` command line: import, check-config, verify, exit codes."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import zipfile

from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from dwdaemon.cli import exitcodes
from dwdaemon.cli.main import main
from tests.support import start_daemon, testdata

FILES = ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "rtdose.dcm"]
ZIPPED = ["SC_rgb_rle_2frame.dcm", "waveform_ecg.dcm"]


def run(*argv: str) -> tuple[int, str, str]:
    """``(exit code, stdout, stderr)`` of the command (blocking)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse: --help, usage errors
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def summary(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        name, sep, value = line.partition(": ")
        if sep and not line.startswith(" ") and value.strip().isdigit():
            out[name] = int(value)
    return out


def make_folder(root: str) -> str:
    folder = os.path.join(root, "in")
    os.makedirs(os.path.join(folder, "sub"))
    for i, name in enumerate(FILES):
        shutil.copy(testdata(name), os.path.join(folder, "sub" if i % 2 else "", f"f{i}"))
    with zipfile.ZipFile(os.path.join(folder, "more.zip"), "w") as archive:
        for name in ZIPPED:
            archive.write(testdata(name), f"zipped/{name}")
    with open(os.path.join(folder, "notes.txt"), "w") as fp:
        fp.write("not a DICOM file\n")
    return folder


def write_config(root: str, **keys: object) -> str:
    path = os.path.join(root, "config.json")
    with open(path, "w") as fp:
        json.dump({"StorageDirectory": os.path.abspath(os.path.join(root, "storage")), **keys}, fp)
    return path


class CommandLineTests(TestCase):
    def test_help_and_usage(self) -> None:
        for argv in ([], ["import"], ["verify", "--nope"]):
            self.assertEqual(run(*argv)[0], exitcodes.USAGE, argv)
        for command in ("import", "check-config", "verify"):
            code, out, _ = run(command, "--help")
            self.assertEqual(code, 0)
            self.assertIn("exit codes", out)

    def test_check_config(self) -> None:
        root = self.mktemp()
        os.makedirs(root)
        path = write_config(root, RegisteredUsers={"alice": "s3cret"}, HttpPort=8043,
                            Unknown=1)
        code, out, err = run("check-config", path)
        self.assertEqual(code, exitcodes.OK)
        settings = json.loads(out)
        self.assertEqual(settings["http_port"], 8043)
        self.assertEqual(settings["registered_users"], {"alice": "***"})
        self.assertNotIn("s3cret", out)
        self.assertIn("Unknown", err)
        self.assertEqual(settings["log_format"], "text")
        with open(path, "w") as fp:
            fp.write('{"HttpPort": "x"}')
        code, _, err = run("check-config", path)
        self.assertEqual(code, exitcodes.PARTIAL)
        self.assertIn("HttpPort", err)
        self.assertEqual(run("check-config", os.path.join(root, "missing.json"))[0],
                         exitcodes.FATAL)

    def test_import_into_a_stopped_store_then_verify(self) -> None:
        root = self.mktemp()
        os.makedirs(root)
        folder = make_folder(root)
        config = write_config(root)
        code, out, _ = run("import", folder, "--store", config, "-q")
        self.assertEqual(code, exitcodes.PARTIAL, out)  # notes.txt is not DICOM
        self.assertEqual(summary(out), {"stored": 6, "already stored": 0,
                                        "skipped (journal)": 0, "not DICOM": 1, "refused": 0})
        code, out, _ = run("import", folder, "--store", config, "-q")
        self.assertEqual(summary(out)["already stored"], 6)
        code, out, _ = run("verify", "--config", config, "-q")
        self.assertEqual(code, exitcodes.OK, out)
        self.assertEqual(summary(out)["consistent"], 6)
        # A disk incident: a damaged file, an unknown file, a leftover temporary file.
        storage = os.path.abspath(os.path.join(root, "storage"))
        stored = sorted(os.path.join(d, n) for d, _, names in os.walk(storage)
                        for n in names if len(n) == 36)
        with open(stored[0], "r+b") as fp:
            fp.seek(200)
            fp.write(b"\xff\xff")
        orphan = os.path.join(os.path.dirname(stored[1]), "0" * 36)
        shutil.copy(stored[1], orphan)
        with open(os.path.join(storage, ".tmp", "leftover"), "w") as fp:
            fp.write("x")
        interrupted = stored[2] + ".host-1.tmp"  # a write cut short, beside its final name
        with open(interrupted, "w") as fp:
            fp.write("x")
        code, out, _ = run("verify", "--config", config, "-q", "--json")
        self.assertEqual(code, exitcodes.PARTIAL)
        report = json.loads(out)
        self.assertEqual(len(report["corrupt"]), 1)
        self.assertIn("checksum", report["corrupt"][0]["problem"])
        self.assertEqual(report["orphans"], [orphan])
        self.assertEqual(len(report["temporary"]), 2)
        self.assertIn(interrupted, report["temporary"])
        code, out, _ = run("verify", "--config", config, "-q", "--remove-orphans")
        self.assertFalse(os.path.exists(orphan))
        code, out, _ = run("verify", "--config", config, "-q", "--json")
        report = json.loads(out)
        self.assertEqual((report["orphans"], report["temporary"], len(report["corrupt"])),
                         ([], [], 1))

    def test_verify_without_a_store(self) -> None:
        root = self.mktemp()
        os.makedirs(root)
        self.assertEqual(run("verify", "-c", write_config(root), "-q")[0], exitcodes.FATAL)

    @inlineCallbacks
    def test_import_by_stow_resumes_and_counts_already_stored(self) -> None:
        daemon = start_daemon(self)
        root = self.mktemp()
        os.makedirs(root)
        folder = make_folder(root)
        journal = os.path.join(root, "journal")
        url = daemon.dicomweb
        code, out, _ = yield deferToThread(run, "import", folder, "--url", url, "--journal",
                                           journal, "--batch", "4", "-q")
        self.assertEqual(code, exitcodes.PARTIAL, out)
        self.assertEqual(summary(out), {"stored": 6, "already stored": 0,
                                        "skipped (journal)": 0, "not DICOM": 1, "refused": 0})
        stats = yield daemon.store.statistics()
        self.assertEqual(stats["instances"], 6)
        # Resume: files of the journal are skipped, a new file is sent.
        shutil.copy(testdata("rtplan.dcm"), os.path.join(folder, "new.dcm"))
        code, out, _ = yield deferToThread(run, "import", folder, "--url", url, "--journal",
                                           journal, "-q")
        self.assertEqual(summary(out)["skipped (journal)"], 6)
        self.assertEqual(summary(out)["stored"], 1)
        # Without the journal: nothing is sent twice, the server has them.
        code, out, _ = yield deferToThread(run, "import", folder, "--url", url, "-q")
        self.assertEqual(summary(out)["already stored"], 7)
        self.assertEqual(summary(out)["stored"], 0)

    @inlineCallbacks
    def test_import_refusals_and_unreachable_server(self) -> None:
        daemon = start_daemon(self)
        root = self.mktemp()
        os.makedirs(root)
        truncated = os.path.join(root, "truncated.dcm")
        with open(testdata("CT_small.dcm"), "rb") as fp:
            data = fp.read()
        with open(truncated, "wb") as fp:
            fp.write(data[: len(data) - 1000])
        shutil.copy(testdata("MR_small.dcm"), os.path.join(root, "good.dcm"))
        code, out, _ = yield deferToThread(run, "import", root, "--url", daemon.dicomweb, "-q")
        self.assertEqual(code, exitcodes.PARTIAL)
        self.assertEqual(summary(out)["stored"], 1)
        self.assertEqual(summary(out)["refused"], 1)
        self.assertIn("truncated.dcm: cannot understand (0xC000)", out)
        port = daemon.port.getHost().port
        yield daemon.stop()
        code, out, err = yield deferToThread(run, "import", root, "--url",
                                             f"http://127.0.0.1:{port}/dicom-web", "-q")
        self.assertEqual(code, exitcodes.FATAL)
        self.assertIn("cannot reach", err)

    @inlineCallbacks
    def test_import_needs_credentials(self) -> None:
        daemon = start_daemon(self, authentication_enabled=True,
                              registered_users={"alice": "pw"})
        root = self.mktemp()
        os.makedirs(root)
        shutil.copy(testdata("CT_small.dcm"), root)
        code, _, err = yield deferToThread(run, "import", root, "--url", daemon.dicomweb, "-q")
        self.assertEqual(code, exitcodes.FATAL)
        self.assertIn("401", err)
        code, out, _ = yield deferToThread(run, "import", root, "--url", daemon.dicomweb,
                                           "--user", "alice:pw", "-q")
        self.assertEqual(code, exitcodes.OK, out)
        self.assertEqual(summary(out)["stored"], 1)


class VerifyChecksumTests(TestCase):
    def test_xxh3_checksums_and_legacy_md5_checksums_are_both_verified(self) -> None:
        """Files stored before 2026-12-04 have their MD5 in the index (no prefix): verify
        checks them with MD5, newer ones with XXH3-128."""
        import hashlib
        from types import SimpleNamespace

        import pydicom

        from dwdaemon.cli.verify import check_instance
        from dwdaemon.store.storage import CHECKSUM_PREFIX, StorageArea, checksum_text

        area = StorageArea(self.mktemp())
        area.open_area()
        with open(testdata("CT_small.dcm"), "rb") as fp:
            data = fp.read()
        file_uuid, size, checksum = area.write(data)
        self.assertEqual(checksum, checksum_text(data))
        self.assertTrue(checksum.startswith(CHECKSUM_PREFIX))
        ds = pydicom.dcmread(testdata("CT_small.dcm"), stop_before_pixels=True)

        def row(indexed: str) -> SimpleNamespace:
            return SimpleNamespace(file_uuid=file_uuid, file_size=size, file_md5=indexed,
                                   study_uid=ds.StudyInstanceUID,
                                   series_uid=ds.SeriesInstanceUID, sop_uid=ds.SOPInstanceUID)

        legacy = hashlib.md5(data).hexdigest()
        self.assertIsNone(check_instance(area, row(checksum)))
        self.assertIsNone(check_instance(area, row(legacy)))
        self.assertIn("MD5", check_instance(area, row("0" * 32)))
        self.assertIn("checksum", check_instance(area, row(CHECKSUM_PREFIX + "0" * 32)))
