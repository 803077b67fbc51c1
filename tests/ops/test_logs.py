"""JSON log lines."""

from __future__ import annotations

import io
import json
import os

from twisted.logger import FileLogObserver, LogLevel, LogPublisher, formatEventAsClassicLogText
from twisted.trial.unittest import TestCase

from dwdaemon import tap
from dwdaemon.logs import JsonLogService, event_json, swap_text_observers


class JsonLogTests(TestCase):
    def test_access_event(self) -> None:
        line = event_json({
            "log_format": "{method} {uri} {status}", "log_time": 0.5,
            "log_level": LogLevel.info, "log_namespace": "dwdaemon.access", "method": "GET",
            "uri": "/system", "status": 200, "request_id": "abc", "route": "/system",
            "duration": 0.002, "client": "127.0.0.1"})
        doc = json.loads(line)
        self.assertEqual(doc["time"], "1970-01-01T00:00:00.500Z")
        self.assertEqual(doc["level"], "info")
        self.assertEqual(doc["message"], "GET /system 200")
        for key in ("request_id", "route", "status", "duration", "client"):
            self.assertIn(key, doc)
        self.assertTrue(line.endswith("\n"))
        self.assertEqual(line.count("\n"), 1)

    def test_text_observer_swapped_for_json_on_the_same_file(self) -> None:
        out = io.StringIO()
        publisher = LogPublisher()
        publisher.addObserver(FileLogObserver(out, formatEventAsClassicLogText))
        self.assertEqual(swap_text_observers(publisher), 1)
        publisher({"log_format": "hello\nworld", "log_time": 1.0, "log_level": LogLevel.warn,
                   "log_namespace": "x"})
        (line,) = out.getvalue().splitlines()
        self.assertEqual(json.loads(line)["message"], "hello\nworld")
        self.assertEqual(swap_text_observers(publisher), 0)


class LogFormatServiceTests(TestCase):
    def test_json_log_format_adds_the_service_first(self) -> None:
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = os.path.join(directory, "c.json")
        with open(path, "w") as fp:
            json.dump({"StorageDirectory": os.path.join(directory, "s"), "HttpPort": 9499,
                              "LogFormat": "json"}, fp)
        options = tap.Options()
        options.parseOptions(["--config", path])
        top = tap.makeService(options)
        self.assertIsInstance(list(top)[0], JsonLogService)
        options = tap.Options()
        with open(path, "w") as fp:
            json.dump({"StorageDirectory": os.path.join(directory, "s")}, fp)
        options.parseOptions(["--config", path])
        self.assertFalse(any(isinstance(s, JsonLogService) for s in tap.makeService(options)))
