"""The site's composition: route groups with their own Klein apps under one root resource."""

from __future__ import annotations

import json
import os
from typing import Any

import treq
from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial import unittest
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import IRequest
from twisted.web.server import Site

from dwdaemon import tap
from dwdaemon.config import DicomWebConfig
from dwdaemon.threads import ThreadPools
from dwdaemon.web.routing import RouteGroup
from dwdaemon.web.site import Routes, route_map
from tests.support import make_config


class Things(RouteGroup):
    """``GET /things/{name}`` and ``GET /shared``."""

    def __init__(self, config: Any, tag: str) -> None:
        super().__init__(config)
        self.tag = tag
        self.route("/things/<string:name>", ["GET"], self.thing, endpoint=f"{tag}.thing")
        self.route("/shared", ["GET"], self.shared, endpoint=f"{tag}.shared")

    def thing(self, request: IRequest, name: str) -> bytes:
        return f"{self.tag}:{name}".encode()

    def shared(self, request: IRequest) -> bytes:
        return self.tag.encode()


class Special(RouteGroup):
    """``GET /things/special`` (static: wins over ``/things/{name}`` of another group) and
    ``POST /shared``."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.route("/things/special", ["GET"], self.special, endpoint="special.get")
        self.route("/shared", ["POST"], self.post, endpoint="special.post")

    def special(self, request: IRequest) -> bytes:
        return b"special"

    def post(self, request: IRequest) -> bytes:
        return b"posted"


class RoutesTests(unittest.TestCase):
    def serve(self, *groups: RouteGroup) -> Any:
        config = make_config(self.mktemp())
        port = reactor.listenTCP(0, Site(Routes(config, groups)), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))
        base = f"http://127.0.0.1:{port.getHost().port}"

        @inlineCallbacks
        def call(method: str, path: str) -> Any:
            response = yield http.request(method, base + path)
            body = yield treq.content(response)
            return response, body

        return call

    @inlineCallbacks
    def test_each_group_answers_its_routes(self) -> None:
        config = make_config(self.mktemp())
        call = self.serve(Things(config, "a"), Special(config))
        response, body = yield call("GET", "/things/x")
        self.assertEqual((response.code, body), (200, b"a:x"))
        # the rule of the other group is more specific: it wins, whatever the group order
        response, body = yield call("GET", "/things/special")
        self.assertEqual((response.code, body), (200, b"special"))
        response, body = yield call("POST", "/shared")
        self.assertEqual((response.code, body), (200, b"posted"))

    @inlineCallbacks
    def test_unrouted_paths_and_methods(self) -> None:
        config = make_config(self.mktemp())
        call = self.serve(Things(config, "a"), Special(config))
        response, body = yield call("GET", "/nothing/here")
        self.assertEqual(response.code, 404)
        self.assertEqual(json.loads(body)["Message"], "unknown resource")
        # the methods of every group that routes the path
        response, body = yield call("DELETE", "/shared")
        self.assertEqual(response.code, 405)
        self.assertEqual(response.headers.getRawHeaders("allow"), ["GET,POST"])
        self.assertEqual(json.loads(body)["HttpStatus"], 405)

    def test_an_endpoint_routed_twice_is_refused(self) -> None:
        config = make_config(self.mktemp())
        with self.assertRaises(ValueError):
            route_map([Things(config, "a"), Things(config, "a")])
        self.assertEqual(len(list(route_map([Things(config, "a"), Things(config, "b")])
                                  .iter_rules())), 4)


class BuildDaemonTests(unittest.TestCase):
    def groups(self, **overrides: Any) -> list[str]:
        config = make_config(os.path.abspath(self.mktemp()), **overrides)
        daemon = tap.build_daemon(config, pools=ThreadPools(synchronous=True))
        resource = daemon.site.resource
        routes = getattr(resource, "wrapped", resource)  # under CORS when enabled
        self.assertIsInstance(routes, Routes)
        return [type(group).__name__ for group in routes.groups]

    def test_groups_follow_the_configuration(self) -> None:
        core = ["CoreRest", "Jobs", "Tools", "DefaultEncoding", "CoreImages", "MetricsPage",
                "WebPage"]
        dicomweb = ["Stow", "Qido", "WadoRs", "Servers"]
        self.assertEqual(self.groups(), [*core, *dicomweb, "WadoUri", "Capabilities"])
        self.assertEqual(self.groups(dicomweb=DicomWebConfig(enable_wado=False)),
                         [*core, *dicomweb, "Capabilities"])
        self.assertEqual(self.groups(dicomweb=DicomWebConfig(enable=False)),
                         [*core, "Capabilities"])
