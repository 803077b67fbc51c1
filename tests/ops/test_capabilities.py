"""OPTIONS: PS3.18 Retrieve Capabilities (WADL and JSON) built from the route table."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from dwdaemon.web import capabilities_model as cm
from tests.support import start_daemon

NS = {"w": cm.WADL_NS}


class CapabilitiesTests(TestCase):
    def setUp(self) -> None:
        self.daemon = start_daemon(self)

    @inlineCallbacks
    def options(self, path: str, accept: str | None = None) -> tuple:
        headers = {"Accept": [accept]} if accept else {}
        response, body = yield self.daemon.request("OPTIONS", path, headers=headers)
        return response, body

    @inlineCallbacks
    def test_service_root_is_wadl_by_default_and_every_resource_answers(self) -> None:
        for root in ("/dicom-web/", "/dicom-web"):
            response, body = yield self.options(root)
            self.assertEqual(response.code, 200, body)
            self.assertEqual(response.headers.getRawHeaders("content-type"), [cm.WADL])
        doc = ET.fromstring(body)
        (resources,) = doc.findall("w:resources", NS)
        base = resources.get("base")
        self.assertEqual(base, self.daemon.url + "/dicom-web/")
        paths = {r.get("path"): r for r in resources.findall("w:resource", NS)}
        for expected in ("studies", "series", "instances", "studies/{study}",
                         "studies/{study}/series/{series}/instances/{sop}/frames/{frames}",
                         "studies/{study}/rendered", "servers/{name}/stow"):
            self.assertIn(expected, paths)
        studies = {m.get("name"): m for m in paths["studies"].findall("w:method", NS)}
        self.assertEqual(set(studies), {"GET", "POST"})
        query = [p.get("name") for p in studies["GET"].findall("w:request/w:param", NS)]
        self.assertIn("limit", query)
        self.assertIn("includefield", query)
        self.assertIn('multipart/related; type="application/dicom"', [
            r.get("mediaType") for r in studies["POST"].findall("w:request/w:representation",
                                                                NS)])
        # Every documented resource answers OPTIONS with the methods documented for it.
        for path, resource in paths.items():
            concrete = re.sub(r"{[^}]+}", "1.2.3", path)
            response, body = yield self.options("/dicom-web/" + concrete)
            self.assertEqual(response.code, 200, (path, body))
            allowed = {m.strip() for m in response.headers.getRawHeaders("allow")[0].split(",")}
            documented = {m.get("name") for m in resource.findall("w:method", NS)}
            self.assertTrue(documented <= allowed, (path, documented, allowed))
            self.assertIn("OPTIONS", allowed)

    @inlineCallbacks
    def test_resource_allow_and_json(self) -> None:
        response, body = yield self.options("/dicom-web/studies", "application/json")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("allow"), ["GET, HEAD, OPTIONS, POST"])
        doc = json.loads(body)
        (resource,) = doc["resources"]
        self.assertEqual(resource["path"], "dicom-web/studies")
        self.assertEqual({m["name"] for m in resource["methods"]}, {"GET", "POST"})

    @inlineCallbacks
    def test_whole_server_wado_uri_and_core_api(self) -> None:
        response, body = yield self.options("/", "application/xml")
        self.assertEqual(response.code, 200)
        paths = {r.get("path") for r in ET.fromstring(body).iter(f"{{{cm.WADL_NS}}}resource")}
        self.assertIn("wado", paths)
        self.assertIn("instances", paths)
        self.assertIn("metrics", paths)
        response, body = yield self.options("/wado")
        self.assertEqual(response.code, 200)
        self.assertIn(b"requestType", body)

    @inlineCallbacks
    def test_unknown_path_and_unacceptable_type(self) -> None:
        response, body = yield self.options("/nothing/here")
        self.assertEqual(response.code, 404)
        self.assertEqual(json.loads(body)["HttpStatus"], 404)
        response, body = yield self.options("/dicom-web/studies", "image/png")
        self.assertEqual(response.code, 406)
        # Other methods still get 404 / 405 as before.
        response, _ = yield self.daemon.request("GET", "/nothing/here")
        self.assertEqual(response.code, 404)
        response, _ = yield self.daemon.request("PUT", "/dicom-web/studies")
        self.assertEqual(response.code, 405)

    @inlineCallbacks
    def test_same_auth_as_the_rest(self) -> None:
        daemon = start_daemon(self, authentication_enabled=True, registered_users={"a": "b"})
        for path in ("/dicom-web/", "/dicom-web/studies", "/nothing"):
            response, _ = yield daemon.request("OPTIONS", path)
            self.assertEqual(response.code, 401, path)


class ModelTests(TestCase):
    def test_template_of(self) -> None:
        self.assertEqual(cm.template_of("/a/<string:study>/b/<path:element>/<x>"),
                         "/a/{study}/b/{element}/{x}")
        self.assertEqual(cm.template_of("/<any(patients,studies):level>"), "/{level}")
