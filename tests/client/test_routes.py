"""The client routes of one daemon (A) against a second daemon (B) in the same process.

B is a real daemon (STOW-RS, WADO-RS, QIDO-RS of the other modules) reached over
plain HTTP with Basic auth, over HTTPS requiring a client certificate, or through
a recording proxy; misbehaving remotes are small twisted.web fakes.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pydicom
from twisted.internet import protocol, reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial import unittest
from twisted.web import resource, server

from dwdaemon.config import RemoteServer
from dwdaemon.jobs import INTERRUPTED
from tests.support import read, start_daemon, testdata

from .netsupport import RecordingProxyFactory, make_pki
from .test_dicomweb import FakeWado

FILES = ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "rtplan.dcm", "rtdose.dcm"]
_PKI: list = []


def pki():
    if not _PKI:
        import tempfile

        _PKI.append(make_pki(tempfile.mkdtemp(prefix="dwd-routes-pki-")))
    return _PKI[0]


class Counting(resource.Resource):
    """Wraps a site's root resource and records (method, path) of every request."""

    isLeaf = True

    def __init__(self, inner: Any) -> None:
        super().__init__()
        self.inner = inner
        self.seen: list[tuple[str, str]] = []

    def render(self, request):
        self.seen.append((request.method.decode(), request.path.decode()))
        return self.inner.render(request)

    def stow_requests(self) -> int:
        return sum(1 for m, p in self.seen if m == "POST" and p.endswith("/studies"))


def start_services(daemon: Any) -> None:
    """Start the daemon's extra services (job engine, remote servers), as twistd does."""
    for service in daemon.parts.services:
        if not service.running:
            service.startService()


class Silent(protocol.Protocol):
    """Accepts connections and never answers."""


class RoutesTests(unittest.TestCase):
    timeout = 60

    # -- set-up helpers ----------------------------------------------------------------

    def remote(self, **overrides: Any):
        """Daemon B, with Basic auth, its root wrapped by a request counter."""
        b = start_daemon(self, os.path.join(self.mktemp(), "b"), authentication_enabled=True,
                         registered_users={"alice": "pw"}, **overrides)
        b.counter = Counting(b.site.resource)
        b.site.resource = b.counter
        start_services(b)
        return b

    def local(self, servers: dict[str, RemoteServer], directory: str | None = None,
              stow_max_instances: int = 0, stow_max_size: int = 0, **overrides: Any):
        """Daemon A, knowing ``servers``."""
        from dwdaemon.config import DicomWebConfig

        dw = DicomWebConfig(servers=servers, stow_max_instances=stow_max_instances,
                            stow_max_size=stow_max_size)
        a = start_daemon(self, directory or os.path.join(self.mktemp(), "a"),
                         dicomweb=dw, **overrides)
        start_services(a)
        return a

    @inlineCallbacks
    def upload(self, daemon, names=FILES, auth=None) -> Any:
        ids = []
        for name in names:
            response, body = yield daemon.request(
                "POST", "/instances", data=read(testdata(name)), auth=auth)
            self.assertEqual(response.code, 200, body)
            ids.append(json.loads(body)["ID"])
        return ids

    @inlineCallbacks
    def post(self, daemon, path: str, doc: Any) -> Any:
        response, body = yield daemon.request(
            "POST", daemon.config.dicomweb.root + path, data=json.dumps(doc).encode())
        return response, body

    def b_server(self, b, name="b", **kw) -> RemoteServer:
        kw.setdefault("username", "alice")
        kw.setdefault("password", "pw")
        return RemoteServer(name=name, url=b.dicomweb + "/", **kw)

    def study_uid(self, name: str) -> str:
        return str(pydicom.dcmread(testdata(name), stop_before_pixels=True).StudyInstanceUID)

    def listen_fake(self, res: resource.Resource) -> str:
        port = reactor.listenTCP(0, server.Site(res), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return f"http://127.0.0.1:{port.getHost().port}/dicom-web/"

    # -- plain HTTP with Basic auth ------------------------------------------------------

    @inlineCallbacks
    def test_list_operations_expand(self):
        b = self.remote()
        a = self.local({"b": self.b_server(b, has_delete=True)})
        r, body = yield a.request("GET", "/dicom-web/servers/")
        self.assertEqual(json.loads(body), ["b"])
        r, body = yield a.request("GET", "/dicom-web/servers?expand")
        details = json.loads(body)["b"]
        self.assertEqual(details["Username"], "alice")
        self.assertIsNone(details["Password"])
        self.assertNotIn("pw", body.decode())
        r, body = yield a.request("GET", "/dicom-web/servers/b")
        # Orthanc's five operations and order, "delete" when HasDelete
        self.assertEqual(json.loads(body), ["get", "retrieve", "stow", "wado", "qido", "delete"])
        r, body = yield a.request("GET", "/dicom-web/servers/nope")
        self.assertEqual(r.code, 404)
        r, body = yield self.post(a, "servers/nope/get", {"Uri": "/studies"})
        self.assertEqual(r.code, 404)

    @inlineCallbacks
    def test_get_qido_with_basic_auth(self):
        b = self.remote()
        yield self.upload(b, ["CT_small.dcm", "MR_small.dcm"], auth=("alice", "pw"))
        a = self.local({"b": self.b_server(b), "noauth": self.b_server(b, "noauth",
                                                                      username=None,
                                                                      password=None)})
        uid = self.study_uid("CT_small.dcm")
        r, body = yield self.post(a, "servers/b/get", {
            "Uri": f"/studies/{uid}/metadata",
            "HttpHeaders": {"Accept": "application/dicom+json"}})
        self.assertEqual(r.code, 200)
        self.assertEqual(r.headers.getRawHeaders(b"content-type")[0], b"application/dicom+json")
        meta = json.loads(body)
        self.assertEqual(meta[0]["0020000D"]["Value"], [uid])
        # the remote's refusal is passed through by /get
        r, body = yield self.post(a, "servers/noauth/get", {"Uri": "/studies"})
        self.assertEqual(r.code, 401)
        # qido: a JSON array, Arguments encoded
        r, body = yield self.post(a, "servers/b/qido", {
            "Uri": "/studies", "Arguments": {"StudyInstanceUID": uid}})
        self.assertEqual(r.code, 200, body)
        matches = json.loads(body)
        self.assertEqual([m["0020000D"]["Value"][0] for m in matches], [uid])
        # a remote 401 on qido is a 502 naming the server and the status
        r, body = yield self.post(a, "servers/noauth/qido", {"Uri": "/studies"})
        self.assertEqual(r.code, 502)
        self.assertIn("'noauth'", json.loads(body)["Message"])
        self.assertIn("HTTP 401", json.loads(body)["Message"])

    @inlineCallbacks
    def test_stow_chunked_by_instances_and_size(self):
        b = self.remote()
        a = self.local({"b": self.b_server(b)}, stow_max_instances=2)
        ids = yield self.upload(a)
        r, body = yield self.post(a, "servers/b/stow", {"Resources": ids})
        self.assertEqual(r.code, 200, body)
        answer = json.loads(body)
        self.assertEqual((answer["Sent"], answer["Stored"], answer["Failed"]), (5, 5, 0))
        self.assertEqual(b.counter.stow_requests(), 3)  # 2 + 2 + 1
        r, body = yield b.request("GET", "/instances", auth=("alice", "pw"))
        self.assertEqual(sorted(json.loads(body)), sorted(ids))

        # StowMaxSize: 1 MB cuts these five files (1.35 MB) in two
        big = ["examples_overlay.dcm", "waveform_ecg.dcm", "examples_palette.dcm",
               "examples_rgb_color.dcm", "examples_ybr_color.dcm"]
        b2 = self.remote()
        a2 = self.local({"b": self.b_server(b2)}, stow_max_size=1)
        ids2 = yield self.upload(a2, big)
        sizes = [os.path.getsize(testdata(n)) for n in big]
        r, body = yield self.post(a2, "servers/b/stow", {"Resources": ids2})
        self.assertEqual(json.loads(body)["Stored"], 5)
        from dwdaemon.client.dicomweb import StowItem, plan_stow_chunks

        expected = len(plan_stow_chunks([StowItem("", s) for s in sizes], 0, 1))
        self.assertGreater(expected, 1)
        self.assertEqual(b2.counter.stow_requests(), expected)

    @inlineCallbacks
    def test_stow_by_patient_and_unknown(self):
        b = self.remote()
        a = self.local({"b": self.b_server(b)})
        yield self.upload(a, ["CT_small.dcm"])
        r, body = yield a.request("GET", "/patients")
        patient = json.loads(body)[0]
        r, body = yield self.post(a, "servers/b/stow", {"Resources": [patient]})
        self.assertEqual(json.loads(body)["Stored"], 1)
        r, body = yield self.post(a, "servers/b/stow", {"Resources": ["nope"]})
        self.assertEqual(r.code, 404)

    @inlineCallbacks
    def test_retrieve_async_job(self):
        b = self.remote()
        b_ids = yield self.upload(b, ["CT_small.dcm", "MR_small.dcm"], auth=("alice", "pw"))
        a = self.local({"b": self.b_server(b)})
        ct = pydicom.dcmread(testdata("CT_small.dcm"), stop_before_pixels=True)
        r, body = yield self.post(a, "servers/b/retrieve", {
            "Resources": [{"Study": str(ct.StudyInstanceUID)},
                          {"Study": self.study_uid("MR_small.dcm"),
                           "Series": str(pydicom.dcmread(testdata("MR_small.dcm"))
                                         .SeriesInstanceUID)}],
            "Synchronous": False})
        self.assertEqual(r.code, 200)
        job = json.loads(body)
        self.assertEqual(job["Path"], f"/jobs/{job['ID']}")
        for _ in range(200):
            r, body = yield a.request("GET", job["Path"])
            info = json.loads(body)
            if info["State"] in ("Success", "Failure"):
                break
            yield deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(info["State"], "Success", info)
        self.assertEqual(info["Progress"], 100)
        self.assertEqual(sorted(info["Result"]["Instances"]), sorted(b_ids))
        r, body = yield a.request("GET", "/instances")
        self.assertEqual(sorted(json.loads(body)), sorted(b_ids))
        r, body = yield a.request("GET", "/jobs")
        self.assertIn(job["ID"], json.loads(body))

    @inlineCallbacks
    def test_orthanc_fields_and_wado_operation(self):
        """retrieve answers carry ReceivedInstancesCount/NetworkUsageMB, stow answers
        InstancesCount/NetworkSizeMB (strings, as Orthanc); ``wado`` retrieves the resource a
        WADO-RS Uri names, as an asynchronous job unless Synchronous."""
        b = self.remote()
        b_ids = yield self.upload(b, ["CT_small.dcm", "MR_small.dcm"], auth=("alice", "pw"))
        a = self.local({"b": self.b_server(b)})
        r, body = yield self.post(a, "servers/b/retrieve", {
            "Resources": [{"Study": self.study_uid("CT_small.dcm")}]})
        self.assertEqual(r.code, 200, body)
        answer = json.loads(body)
        self.assertEqual(answer["ReceivedInstancesCount"], "1")
        self.assertEqual(answer["NetworkUsageMB"], "0")
        r, body = yield self.post(a, "servers/b/stow", {"Resources": [answer["Instances"][0]]})
        answer = json.loads(body)
        self.assertEqual((answer["InstancesCount"], answer["NetworkSizeMB"]), ("1", "0"))

        mr = pydicom.dcmread(testdata("MR_small.dcm"), stop_before_pixels=True)
        uri = f"/studies/{mr.StudyInstanceUID}/series/{mr.SeriesInstanceUID}"
        r, body = yield self.post(a, "servers/b/wado", {"Uri": uri})
        job = json.loads(body)
        self.assertEqual(set(job), {"ID", "Path"})
        r, body = yield self.post(a, "servers/b/wado", {"Uri": uri, "Synchronous": True})
        self.assertEqual(r.code, 200, body)
        self.assertEqual(json.loads(body)["ReceivedInstancesCount"], "1")
        r, body = yield a.request("GET", "/instances")
        self.assertEqual(sorted(json.loads(body)), sorted(b_ids))
        for bad in ("/studies", "/studies/1.2/metadata", "/series/1.2"):
            r, body = yield self.post(a, "servers/b/wado", {"Uri": bad})
            self.assertEqual(r.code, 400, bad)

    @inlineCallbacks
    def test_put_delete_servers_survive_restart(self):
        b = self.remote()
        directory = os.path.join(self.mktemp(), "a")
        a = self.local({"cfg": self.b_server(b, "cfg")}, directory=directory)
        url = b.dicomweb + "/"
        r, body = yield a.request("PUT", "/dicom-web/servers/added", data=json.dumps(
            {"Url": url, "Username": "alice", "Password": "pw", "HasDelete": True}).encode())
        self.assertEqual(r.code, 200, body)
        r, body = yield a.request("PUT", "/dicom-web/servers/bad", data=b'{"Url": "ftp://x"}')
        self.assertEqual(r.code, 400)
        self.assertIn("Url", json.loads(body)["Message"])
        r, body = yield a.request("DELETE", "/dicom-web/servers/cfg")
        self.assertEqual(r.code, 200)
        r, body = yield a.request("DELETE", "/dicom-web/servers/cfg")
        self.assertEqual(r.code, 404)
        yield a.stop()
        a2 = self.local({"cfg": self.b_server(b, "cfg")}, directory=directory)
        r, body = yield a2.request("GET", "/dicom-web/servers/")
        self.assertEqual(json.loads(body), ["added"])
        yield self.upload(b, ["CT_small.dcm"], auth=("alice", "pw"))
        r, body = yield self.post(a2, "servers/added/qido", {"Uri": "/studies"})
        self.assertEqual(len(json.loads(body)), 1)  # the stored password works

    @inlineCallbacks
    def test_get_streams_multipart_and_cuts_on_failure(self):
        b = self.remote()
        yield self.upload(b, ["CT_small.dcm"], auth=("alice", "pw"))
        a = self.local({"b": self.b_server(b)})
        uid = self.study_uid("CT_small.dcm")
        r, body = yield self.post(a, "servers/b/get", {
            "Uri": f"/studies/{uid}",
            "HttpHeaders": {"Accept": 'multipart/related; type="application/dicom"'}})
        self.assertEqual(r.code, 200)
        self.assertTrue(r.headers.getRawHeaders(b"content-type")[0].startswith(
            b"multipart/related"))
        self.assertIn(read(testdata("CT_small.dcm"))[128:4000], body)
        # a remote closing mid-body: the client sees a broken answer, not a short "200"
        wado = FakeWado([testdata("CT_small.dcm")])
        wado.mode = "truncated"
        a2 = self.local({"fake": RemoteServer(name="fake", url=self.listen_fake(_Under(wado)))})
        d = self.post(a2, "servers/fake/get", {"Uri": "/studies/1.2"})
        failure = yield self.assertFailure(d, Exception)
        self.assertIn("ResponseFailed", type(failure).__name__ + repr(failure))

    @inlineCallbacks
    def test_remote_delete(self):
        b = self.remote()
        ids = yield self.upload(b, ["CT_small.dcm", "MR_small.dcm"], auth=("alice", "pw"))
        root = RemoteServer(name="core", url=b.url + "/", username="alice", password="pw",
                            has_delete=True)
        a = self.local({"core": root, "b": self.b_server(b)})
        r, body = yield self.post(a, "servers/b/delete", {"Uri": "/studies/1.2"})
        self.assertEqual(r.code, 400)
        self.assertIn("HasDelete", json.loads(body)["Message"])
        r, body = yield b.request("GET", f"/instances/{ids[0]}", auth=("alice", "pw"))
        study = json.loads(body)["ParentSeries"]
        r, body = yield self.post(a, "servers/core/delete", {"Uri": f"/series/{study}"})
        self.assertEqual(r.code, 200, body)
        r, body = yield b.request("GET", "/instances", auth=("alice", "pw"))
        self.assertEqual(json.loads(body), [ids[1]])
        r, body = yield self.post(a, "servers/core/delete", {"Uri": f"/series/{study}"})
        self.assertEqual(r.code, 404)  # the remote's answer, passed through

    # -- HTTPS requiring a client certificate -------------------------------------------

    @inlineCallbacks
    def test_https_client_certificate(self):
        p = pki()
        b = self.remote()
        yield self.upload(b, ["CT_small.dcm"], auth=("alice", "pw"))
        tls = reactor.listenSSL(0, b.site, p.server_options(require_client_cert=True),
                                interface="127.0.0.1")
        self.addCleanup(tls.stopListening)
        url = f"https://localhost:{tls.getHost().port}/dicom-web/"
        cert = {"certificate_file": p.client_cert_file,
                "certificate_key_file": p.client_key_file,
                "certificate_key_password": p.client_key_password,
                "username": "alice", "password": "pw"}
        servers = {
            "tls": RemoteServer(name="tls", url=url, **cert),
            "nocert": RemoteServer(name="nocert", url=url, username="alice", password="pw"),
        }
        query = {"Uri": "/studies"}
        a = self.local(servers, https_ca_certificates=p.ca_file)
        r, body = yield self.post(a, "servers/tls/qido", query)
        self.assertEqual((r.code, len(json.loads(body))), (200, 1), body)
        r, body = yield self.post(a, "servers/nocert/qido", query)
        self.assertEqual(r.code, 502)
        self.assertIn("'nocert'", json.loads(body)["Message"])
        self.assertIn("TLS", json.loads(body)["Message"])
        # a CA that did not sign the server certificate: unverifiable
        a_bad = self.local(servers, https_ca_certificates=p.other_ca_file)
        r, body = yield self.post(a_bad, "servers/tls/qido", query)
        self.assertEqual(r.code, 502)
        self.assertIn("certificate verification failed", json.loads(body)["Message"])
        # ... accepted when verification is off
        a_off = self.local(servers, https_ca_certificates=p.other_ca_file,
                           https_verify_peers=False)
        r, body = yield self.post(a_off, "servers/tls/qido", query)
        self.assertEqual((r.code, len(json.loads(body))), (200, 1), body)

    # -- proxy --------------------------------------------------------------------------

    @inlineCallbacks
    def test_proxy_sees_the_traffic(self):
        b = self.remote()
        yield self.upload(b, ["CT_small.dcm"], auth=("alice", "pw"))
        proxy = RecordingProxyFactory()
        port = reactor.listenTCP(0, proxy, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        a = self.local({"b": self.b_server(b)},
                       http_proxy=f"http://127.0.0.1:{port.getHost().port}")
        uid = self.study_uid("CT_small.dcm")
        r, body = yield self.post(a, "servers/b/retrieve", {"Resources": [{"Study": uid}]})
        self.assertEqual(r.code, 200, body)
        self.assertEqual(len(json.loads(body)["Instances"]), 1)
        r, body = yield self.post(a, "servers/b/qido", {"Uri": "/studies"})
        self.assertEqual(r.code, 200)
        self.assertEqual([s[:2] for s in proxy.seen], [
            ("GET", f"{b.dicomweb}/studies/{uid}"),
            ("GET", f"{b.dicomweb}/studies"),
        ])

    # -- failures -----------------------------------------------------------------------

    @inlineCallbacks
    def test_retrieve_failures_keep_stored_instances(self):
        wado = FakeWado([testdata("CT_small.dcm"), testdata("MR_small.dcm")])
        url = self.listen_fake(_Under(wado))
        a = self.local({"fake": RemoteServer(name="fake", url=url)})
        expected = {
            "status": (502, "HTTP 503"),
            "nondicom": (502, "non-DICOM part"),
            "garbage": (502, "not a valid DICOM instance"),
            "malformed": (502, "malformed multipart"),
            "truncated": (502, "connection closed"),
            "nonmultipart": (502, "not multipart/related"),
        }
        for mode, (status, text) in expected.items():
            wado.mode = mode
            r, body = yield self.post(a, "servers/fake/retrieve",
                                      {"Resources": [{"Study": "1.2.3"}]})
            doc = json.loads(body)
            self.assertEqual(r.code, status, (mode, doc))
            self.assertIn("'fake'", doc["Message"])
            self.assertIn(text, doc["Message"], mode)
            if mode == "nondicom":
                # the first part was stored before the failure, and stays
                self.assertEqual(len(doc["Details"]["Instances"]), 1, doc)
            if mode == "garbage":
                # part 2 is refused; parts 1 (and 3, ingested concurrently) stay stored
                self.assertIn("part 2 ", doc["Message"])
                self.assertIn(len(doc["Details"]["Instances"]), (1, 2), doc)
            if mode == "truncated":
                # both parts had arrived whole before the connection broke
                self.assertEqual(len(doc["Details"]["Instances"]), 2, doc)
        tmp = os.path.join(a.config.storage_directory, "tmp")
        if os.path.isdir(tmp):
            self.assertEqual(os.listdir(tmp), [])
        r, body = yield a.request("GET", "/instances")
        self.assertEqual(len(json.loads(body)), 2)  # CT and MR (each once), nothing else

    @inlineCallbacks
    def test_timeout(self):
        port = reactor.listenTCP(0, protocol.Factory.forProtocol(Silent), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        url = f"http://127.0.0.1:{port.getHost().port}/dicom-web/"
        a = self.local({"slow": RemoteServer(name="slow", url=url, timeout=0.5)})
        r, body = yield self.post(a, "servers/slow/qido", {"Uri": "/studies"})
        self.assertEqual(r.code, 504)
        self.assertIn("'slow': timed out after 0.5 s", json.loads(body)["Message"])

    @inlineCallbacks
    def test_cancel_and_restart_with_job_in_flight(self):
        port = reactor.listenTCP(0, protocol.Factory.forProtocol(Silent), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        url = f"http://127.0.0.1:{port.getHost().port}/dicom-web/"
        directory = os.path.join(self.mktemp(), "a")
        servers = {"slow": RemoteServer(name="slow", url=url, timeout=30)}
        a = self.local(servers, directory=directory)
        jobs = []
        for _ in range(2):
            r, body = yield self.post(a, "servers/slow/retrieve", {
                "Resources": [{"Study": "1.2"}], "Synchronous": False})
            jobs.append(json.loads(body)["ID"])
        r, body = yield a.request("POST", f"/jobs/{jobs[0]}/cancel")
        self.assertEqual(r.code, 200)
        r, body = yield a.request("GET", f"/jobs/{jobs[0]}")
        info = json.loads(body)
        self.assertEqual(info["State"], "Failure")
        self.assertIn("cancelled", info["ErrorDescription"])
        r, body = yield a.request("GET", f"/jobs/{jobs[1]}")
        self.assertEqual(json.loads(body)["State"], "Running")
        # "restart": stop the daemon with the second job in flight, start a new one
        yield deferLater(reactor, 0.1, lambda: None)  # let the writes land
        yield a.stop()
        a2 = self.local(servers, directory=directory)
        r, body = yield a2.request("GET", "/jobs?expand")
        states = {j["ID"]: (j["State"], j["ErrorDescription"]) for j in json.loads(body)}
        self.assertEqual(states[jobs[1]], ("Failure", INTERRUPTED))
        self.assertEqual(states[jobs[0]][0], "Failure")


class _Under(resource.Resource):
    """Serves ``inner`` under /dicom-web/ for the fake remotes."""

    isLeaf = True

    def __init__(self, inner: resource.Resource) -> None:
        super().__init__()
        self.inner = inner

    def render(self, request):
        request.path = request.path[len(b"/dicom-web"):]
        return self.inner.render_GET(request)



