"""The twistd plugin: options, configuration errors, the service tree, a real twistd run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from dwdaemon import tap
from tests.support import read, testdata


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OptionsTests(SynchronousTestCase):
    def write_config(self, text: str) -> str:
        path = self.mktemp()
        with open(path, "w") as fp:
            fp.write(text)
        return path

    def test_defaults_without_file(self) -> None:
        options = tap.Options()
        options.parseOptions([])
        self.assertEqual(options.config.http_port, 8042)
        self.assertEqual(options.config.listen_address(), "127.0.0.1")

    def test_bad_value_names_the_key(self) -> None:
        path = self.write_config('{ "DicomWeb": { "StowMaxInstances": "ten" } }')
        options = tap.Options()
        with self.assertRaises(usage.UsageError) as ctx:
            options.parseOptions(["--config", path])
        self.assertIn("DicomWeb.StowMaxInstances", str(ctx.exception))

    def test_unknown_key_is_a_warning(self) -> None:
        path = self.write_config('{ "NoSuchKey": 1, // comment\n "HttpPort": 9000 }')
        options = tap.Options()
        options.parseOptions(["--config", path])
        self.assertEqual(options.config.http_port, 9000)
        self.assertTrue(any("NoSuchKey" in w for w in options.warnings))

    def test_missing_file(self) -> None:
        with self.assertRaises(usage.UsageError):
            tap.Options().parseOptions(["--config", "/nonexistent/dwdaemon.json"])

    def test_make_service(self) -> None:
        directory = os.path.abspath(self.mktemp())
        path = self.write_config(json.dumps({"StorageDirectory": directory, "Workers": 1}))
        options = tap.Options()
        options.parseOptions(["--config", path, "--listen", "tcp:0:interface=127.0.0.1"])
        top = tap.makeService(options)
        names = [type(s).__name__ for s in top]
        self.assertIn("ThreadPools", names)
        self.assertIn("StoreService", names)
        self.assertTrue(os.path.isdir(directory))

    def test_store_follows_recently_stored_cache_size(self) -> None:
        """The daemon's store keeps RecentlyStoredCacheSize MB of recent files in the page
        cache (256 by default; 0: no limit)."""
        from dwdaemon.config import Config
        from dwdaemon.threads import ThreadPools

        for configured, window in (({}, 256 << 20),
                                   ({"recently_stored_cache_size": 0}, 0)):
            directory = os.path.abspath(self.mktemp())
            config = Config().with_overrides(storage_directory=directory,
                                             index_directory=directory, **configured)
            store = tap.build_store(config, ThreadPools(synchronous=True))
            try:
                self.assertEqual(store.storage.recent_cache_bytes, window)
            finally:
                store.index.close()

    def test_plugin_is_discoverable(self) -> None:
        import twisted.plugins

        makers = {p.tapname: p for p in getPlugins(IServiceMaker, twisted.plugins)}
        self.assertIn("dicomweb", makers)
        self.assertEqual(makers["dicomweb"].module, "dwdaemon.tap")

    def test_example_config_parses(self) -> None:
        options = tap.Options()
        options.parseOptions(["--config", os.path.join(os.path.dirname(__file__), "..", "..",
                                                       "etc", "dwdaemon.json")])
        self.assertEqual(options.warnings, [])


class TwistdTests(SynchronousTestCase):
    def test_twistd_runs_the_daemon(self) -> None:
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        port = _free_port()
        config = os.path.join(directory, "config.json")
        with open(config, "w") as fp:
            fp.write(f'{{ "HttpPort": {port}, // comments are fine\n'
                     ' "StorageDirectory": "storage", "Name": "Twistd", "Workers": 1 }')
        proc = subprocess.Popen(
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n",
             "--pidfile=", "--logfile=-", "dicomweb", "--config", config],
            cwd=directory, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 30
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/system") as resp:
                        system = json.loads(resp.read())
                    break
                except OSError:
                    if time.time() > deadline or proc.poll() is not None:
                        self.fail(proc.stdout.read().decode() if proc.poll() is not None
                                  else "daemon did not start")
                    time.sleep(0.2)
            self.assertEqual(system["Name"], "Twistd")
            request = urllib.request.Request(f"http://127.0.0.1:{port}/instances",
                                             data=read(testdata("CT_small.dcm")), method="POST")
            with urllib.request.urlopen(request) as resp:
                self.assertEqual(json.loads(resp.read())["Status"], "Success")
            self.assertTrue(os.path.isfile(os.path.join(directory, "storage", "index.sqlite")))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            proc.stdout.close()

    def test_an_index_of_a_newer_dwdaemon_stops_the_start(self) -> None:
        """twistd exits with status 1 and the reason, with one process or with workers; the
        index is left as it was."""
        import sqlite3

        from dwdaemon.store.index.sqlite import SqliteIndex

        directory = os.path.abspath(self.mktemp())
        index = SqliteIndex(os.path.join(directory, "storage"))
        index.open()
        index.close()
        path = os.path.join(directory, "storage", "index.sqlite")
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE properties SET value = '99' WHERE name = 'schema_version'")
        for workers in (1, 2):
            config = os.path.join(directory, f"config-{workers}.json")
            with open(config, "w") as fp:
                json.dump({"HttpPort": _free_port(), "StorageDirectory": "storage",
                           "Workers": workers}, fp)
            proc = subprocess.run(
                [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n",
                 "--pidfile=", "--logfile=-", "dicomweb", "--config", config],
                cwd=directory, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
            output = proc.stdout.decode(errors="replace")
            self.assertEqual(proc.returncode, 1, output)
            self.assertIn("the index has schema version 99, newer than this dwdaemon's", output)
        with sqlite3.connect(path) as conn:
            version = conn.execute(
                "SELECT value FROM properties WHERE name = 'schema_version'").fetchone()[0]
        self.assertEqual(version, "99")
