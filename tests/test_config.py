"""Tests for dwdaemon.config."""

from __future__ import annotations

import json
import os

from twisted.trial.unittest import SynchronousTestCase

from dwdaemon.config import (
    CORS_KEYS,
    DICOMWEB_KEYS,
    POSTGRESQL_KEYS,
    SERVER_KEYS,
    TOP_LEVEL_KEYS,
    Config,
    ConfigError,
    DicomWebConfig,
    PostgresConfig,
    RemoteServer,
    load_config,
    parse_config,
    parse_server,
    strip_comments,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(REPO, "etc", "dwdaemon.json")


def parse(obj: object, base_dir: str = "/base") -> tuple[Config, list[str]]:
    return parse_config(json.dumps(obj), base_dir)


class DefaultsTests(SynchronousTestCase):
    def test_empty_object(self) -> None:
        config, warnings = parse({})
        self.assertEqual(warnings, [])
        self.assertEqual(config.name, "MyOrthanc")
        self.assertEqual(config.http_port, 8042)
        self.assertIsNone(config.http_bind_address)
        self.assertEqual(config.storage_directory, "/base/OrthancStorage")
        self.assertEqual(config.index_directory, "/base/OrthancStorage")
        self.assertFalse(config.remote_access_allowed)
        self.assertFalse(config.authentication_enabled)
        self.assertEqual(config.registered_users, {})
        self.assertFalse(config.ssl_enabled)
        self.assertEqual(config.ssl_certificate, "/base/certificate.pem")
        self.assertFalse(config.overwrite_instances)
        self.assertEqual(config.http_proxy, "")
        self.assertEqual(config.http_timeout, 60)
        self.assertTrue(config.https_verify_peers)
        self.assertIsNone(config.https_ca_certificates)
        self.assertEqual(config.limit_find_results, 1000)
        self.assertEqual(config.limit_find_instances, 0)
        self.assertEqual(config.maximum_request_size, 64)
        self.assertEqual(config.maximum_upload_size, 4096)
        self.assertEqual(config.http_request_timeout, 30)
        self.assertIsNone(config.source)
        self.assertEqual(config.dicomweb, DicomWebConfig())

    def test_dicomweb_defaults(self) -> None:
        d = parse({"DicomWeb": {}})[0].dicomweb
        self.assertTrue(d.enable)
        self.assertEqual(d.root, "/dicom-web/")
        self.assertTrue(d.enable_wado)
        self.assertEqual(d.wado_root, "/wado")
        self.assertIsNone(d.host)
        self.assertFalse(d.ssl)
        self.assertEqual(d.stow_max_instances, 10)
        self.assertEqual(d.stow_max_size, 10)
        self.assertTrue(d.qido_case_sensitive)
        self.assertEqual(d.servers, {})

    def test_dataclass_defaults_match_parsed_defaults(self) -> None:
        config = parse({}, "/")[0]
        self.assertEqual(
            config.with_overrides(
                storage_directory="OrthancStorage", ssl_certificate="certificate.pem"
            ),
            Config(),
        )

    def test_load_none_uses_cwd(self) -> None:
        config, warnings = load_config(None)
        self.assertEqual(warnings, [])
        self.assertEqual(config.storage_directory, os.path.join(os.getcwd(), "OrthancStorage"))
        self.assertIsNone(config.source)

    def test_values_are_read(self) -> None:
        config, warnings = parse(
            {
                "Name": "Archive",
                "HttpPort": 8043,
                "HttpBindAddress": "::1",
                "StorageDirectory": "/data/files",
                "IndexDirectory": "/fast/index",
                "RemoteAccessAllowed": True,
                "AuthenticationEnabled": True,
                "RegisteredUsers": {"alice": "secret"},
                "OverwriteInstances": True,
                "RecentlyStoredCacheSize": 64,
                "WorkerCpuAffinity": False,
                "HttpProxy": "http://proxy:3128",
                "HttpTimeout": 0,
                "HttpsVerifyPeers": False,
                "LimitFindResults": 100,
                "LimitFindInstances": 1000,
                "MaximumRequestSize": 2048,
                "DicomWeb": {
                    "Enable": False,
                    "Root": "/dw/",
                    "EnableWado": False,
                    "WadoRoot": "/wado-uri",
                    "Host": "pacs.example.org:8443",
                    "Ssl": True,
                    "StowMaxInstances": 0,
                    "StowMaxSize": 0,
                    "QidoCaseSensitive": False,
                    "QidoEmptyNoContent": True,
                },
            }
        )
        self.assertEqual(warnings, [])
        self.assertEqual(config.name, "Archive")
        self.assertEqual(config.http_port, 8043)
        self.assertEqual(config.listen_address(), "::1")
        self.assertEqual(config.storage_directory, "/data/files")
        self.assertEqual(config.index_directory, "/fast/index")
        self.assertTrue(config.authentication_enabled)
        self.assertEqual(config.registered_users, {"alice": "secret"})
        self.assertTrue(config.overwrite_instances)
        self.assertEqual(config.recently_stored_cache_size, 64)
        self.assertFalse(config.worker_cpu_affinity)
        self.assertTrue(Config().worker_cpu_affinity)
        self.assertEqual(config.http_proxy, "http://proxy:3128")
        self.assertEqual(config.http_timeout, 0)
        self.assertFalse(config.https_verify_peers)
        self.assertEqual(config.limit_find_results, 100)
        self.assertEqual(config.limit_find_instances, 1000)
        self.assertEqual(config.maximum_request_size, 2048)
        self.assertEqual(
            config.dicomweb,
            DicomWebConfig(
                enable=False,
                root="/dw/",
                enable_wado=False,
                wado_root="/wado-uri",
                host="pacs.example.org:8443",
                ssl=True,
                stow_max_instances=0,
                stow_max_size=0,
                qido_case_sensitive=False,
                qido_empty_no_content=True,
            ),
        )


class ExampleFileTests(SynchronousTestCase):
    def test_parses_without_warnings(self) -> None:
        config, warnings = load_config(EXAMPLE)
        self.assertEqual(warnings, [])
        self.assertEqual(config.source, EXAMPLE)
        self.assertEqual(config.storage_directory, "/var/lib/dwdaemon/storage")
        self.assertEqual(config.index_directory, "/var/lib/dwdaemon/index")
        self.assertEqual(config.ssl_certificate, os.path.join(REPO, "etc", "certificate.pem"))

    def test_defaults_except_directories(self) -> None:
        config = load_config(EXAMPLE)[0]
        expected = Config().with_overrides(
            storage_directory="/var/lib/dwdaemon/storage",
            index_directory="/var/lib/dwdaemon/index",
            ssl_certificate=os.path.join(REPO, "etc", "certificate.pem"),
            source=EXAMPLE,
        )
        self.assertEqual(config, expected)

    def test_every_key_is_shown(self) -> None:
        with open(EXAMPLE, encoding="utf-8") as f:
            text = f.read()
        active = strip_comments(text)
        for key in TOP_LEVEL_KEYS + DICOMWEB_KEYS:
            self.assertIn(f'"{key}"', active, key)
        for key in SERVER_KEYS:  # shown in the commented example of a server
            self.assertIn(f'"{key}"', text, key)


class CommentTests(SynchronousTestCase):
    def test_line_and_block_comments(self) -> None:
        text = """
        // leading comment
        {
          /* block
             comment */ "Name" : "A", // trailing
          "HttpPort" : /* inline */ 9000
        }
        """
        config, warnings = parse_config(text)
        self.assertEqual((config.name, config.http_port, warnings), ("A", 9000, []))

    def test_comment_markers_inside_strings_are_kept(self) -> None:
        text = """{
          "Name" : "a // b /* c */ \\" // d",
          "DicomWeb" : { "Servers" : { "s" : [ "http://example.org/dicom-web/" ] } } // url
        }"""
        config, warnings = parse_config(text)
        self.assertEqual(warnings, [])
        self.assertEqual(config.name, 'a // b /* c */ " // d')
        self.assertEqual(config.dicomweb.servers["s"].url, "http://example.org/dicom-web/")

    def test_strip_comments_keeps_positions(self) -> None:
        text = '{ /* x\ny */ "a" : 1 // z\n}'
        stripped = strip_comments(text)
        self.assertEqual(len(stripped), len(text))
        self.assertEqual(stripped.count("\n"), 2)
        self.assertEqual(json.loads(stripped), {"a": 1})

    def test_unterminated_block_comment(self) -> None:
        e = self.assertRaises(ConfigError, parse_config, '{\n "Name": "x" /* oops\n}')
        self.assertIn("line 2", str(e))

    def test_trailing_commas(self) -> None:
        config, warnings = parse_config('{"Name": "x,]", "RegisteredUsers": {"a": "b",},}')
        self.assertEqual(warnings, [])
        self.assertEqual(config.name, "x,]")
        self.assertEqual(config.registered_users, {"a": "b"})

    def test_syntax_error_gives_line(self) -> None:
        e = self.assertRaises(ConfigError, parse_config, '{\n// c\n"Name": "x"\n"HttpPort": 1}')
        self.assertIn("line 4", str(e))

    def test_top_level_must_be_object(self) -> None:
        e = self.assertRaises(ConfigError, parse_config, "[1]")
        self.assertIn("object", str(e))

    def test_nan_refused(self) -> None:
        self.assertRaises(ConfigError, parse_config, '{"HttpTimeout": NaN}')

    def test_bom_and_duplicates(self) -> None:
        config, warnings = parse_config('\ufeff{"Name": "a", "Name": "b"}')
        self.assertEqual(config.name, "b")
        self.assertEqual(len(warnings), 1)
        self.assertIn("duplicate configuration key Name", warnings[0])


class TypeErrorTests(SynchronousTestCase):
    """Each key refuses values of the wrong type with a message naming it."""

    def assertRefused(self, obj: dict, path: str, *fragments: str) -> ConfigError:
        e = self.assertRaises(ConfigError, parse, obj)
        message = str(e)
        self.assertTrue(message.startswith(path + ":"), message)
        for fragment in fragments:
            self.assertIn(fragment, message)
        return e

    def test_booleans(self) -> None:
        for key in (
            "RemoteAccessAllowed",
            "AuthenticationEnabled",
            "SslEnabled",
            "OverwriteInstances",
            "WorkerCpuAffinity",
            "HttpsVerifyPeers",
        ):
            for bad in ("true", 1, None):
                self.assertRefused({key: bad}, key, "expected a boolean")
        for key in ("Enable", "EnableWado", "Ssl", "QidoCaseSensitive", "QidoEmptyNoContent"):
            self.assertRefused({"DicomWeb": {key: "yes"}}, "DicomWeb." + key, "a boolean")

    def test_integers(self) -> None:
        for key in (
            "HttpTimeout",
            "LimitFindResults",
            "LimitFindInstances",
            "MaximumRequestSize",
        ):
            for bad in (True, 1.5, "10", -1):
                self.assertRefused({key: bad}, key, "expected an integer >= 0")
        for key in ("StowMaxInstances", "StowMaxSize"):
            for bad in (False, 2.0, "10", -3):
                self.assertRefused({"DicomWeb": {key: bad}}, "DicomWeb." + key, "integer >= 0")

    def test_port(self) -> None:
        for bad in (0, 65536, -1, True, "8042", 80.0):
            self.assertRefused({"HttpPort": bad}, "HttpPort", "between 1 and 65535")
        self.assertEqual(parse({"HttpPort": 65535})[0].http_port, 65535)
        self.assertEqual(parse({"HttpPort": 1})[0].http_port, 1)

    def test_message_shows_value(self) -> None:
        self.assertRefused({"HttpPort": 70000}, "HttpPort", "got an integer 70000")
        self.assertRefused({"DicomWeb": {"StowMaxSize": "10"}}, "DicomWeb.StowMaxSize", '"10"')

    def test_strings(self) -> None:
        self.assertRefused({"Name": 3}, "Name", "expected a string")
        self.assertRefused({"StorageDirectory": ""}, "StorageDirectory", "non-empty string")
        self.assertRefused({"StorageDirectory": None}, "StorageDirectory", "non-empty string")
        self.assertRefused({"IndexDirectory": 1}, "IndexDirectory", "string")
        self.assertRefused({"SslCertificate": []}, "SslCertificate", "got an array")
        self.assertRefused({"HttpsCACertificates": 1}, "HttpsCACertificates", "string")
        self.assertRefused({"HttpBindAddress": 1}, "HttpBindAddress", "string")
        self.assertRefused({"HttpBindAddress": "a b"}, "HttpBindAddress", "IP address")
        self.assertRefused({"DicomWeb": {"Host": 1}}, "DicomWeb.Host", "string")
        self.assertRefused({"DicomWeb": {"Host": "a/b"}}, "DicomWeb.Host", "host name")

    def test_objects(self) -> None:
        self.assertRefused({"DicomWeb": []}, "DicomWeb", "expected an object")
        self.assertRefused({"DicomWeb": {"Servers": []}}, "DicomWeb.Servers", "an object")
        self.assertRefused({"RegisteredUsers": ["alice"]}, "RegisteredUsers", "an object")

    def test_registered_users(self) -> None:
        self.assertRefused({"RegisteredUsers": {"alice": 1}}, "RegisteredUsers.alice", "a string")
        self.assertRefused({"RegisteredUsers": {"a:b": "x"}}, "RegisteredUsers", "':'")
        self.assertRefused({"RegisteredUsers": {"": "x"}}, "RegisteredUsers", "empty")

    def test_http_proxy(self) -> None:
        cases = {
            "": "",
            "192.168.0.1:3128": "http://192.168.0.1:3128",
            "proxyUser:proxyPassword@192.168.0.1:3128": (
                "http://proxyUser:proxyPassword@192.168.0.1:3128"
            ),
            "http://proxy.example.org:8080/": "http://proxy.example.org:8080",
            "http://[::1]:3128": "http://[::1]:3128",
        }
        for value, expected in cases.items():
            self.assertEqual(parse({"HttpProxy": value})[0].http_proxy, expected, value)
        for bad in ("proxy", "https://proxy:1", "http://proxy:99999", "ftp://p:1", "a b:1", 3):
            self.assertRefused({"HttpProxy": bad}, "HttpProxy", "expected")

    def test_roots(self) -> None:
        cases = {
            "/dicom-web/": "/dicom-web/",
            "dicom-web": "/dicom-web/",
            "/a/b": "/a/b/",
            "/": "/",
        }
        for value, expected in cases.items():
            self.assertEqual(parse({"DicomWeb": {"Root": value}})[0].dicomweb.root, expected)
        for bad in ("", "/a b/", "/a?x", "/a//b/", 5):
            self.assertRefused({"DicomWeb": {"Root": bad}}, "DicomWeb.Root", "expected")
        cases = {"/wado": "/wado", "wado/": "/wado", "/x/wado/": "/x/wado"}
        for value, expected in cases.items():
            got = parse({"DicomWeb": {"WadoRoot": value}})[0].dicomweb.wado_root
            self.assertEqual(got, expected)
        for bad in ("/", "", "/a#b", None):
            self.assertRefused({"DicomWeb": {"WadoRoot": bad}}, "DicomWeb.WadoRoot", "expected")

    def test_host_empty_means_unset(self) -> None:
        self.assertIsNone(parse({"DicomWeb": {"Host": ""}})[0].dicomweb.host)
        self.assertIsNone(parse({"DicomWeb": {"Host": None}})[0].dicomweb.host)

    def test_source_prefixes_message(self) -> None:
        e = self.assertRaises(ConfigError, parse_config, '{"HttpPort": 0}', "/", "/etc/x.json")
        self.assertTrue(str(e).startswith("/etc/x.json: HttpPort: "), str(e))


class WarningTests(SynchronousTestCase):
    def test_unknown_keys(self) -> None:
        _, warnings = parse(
            {
                "DicomModalities": {},
                "DicomWeb": {"StowMaxsize": 3, "Foo": 1},
                "httpport": 1,
            }
        )
        self.assertEqual(len(warnings), 4, warnings)
        self.assertIn("unknown configuration key DicomModalities, ignored", warnings)
        self.assertIn("unknown configuration key DicomWeb.Foo, ignored", warnings)
        suggested = [w for w in warnings if "StowMaxsize" in w][0]
        self.assertTrue(
            suggested.startswith("unknown configuration key DicomWeb.StowMaxsize, ignored")
        )
        self.assertIn("did you mean DicomWeb.StowMaxSize?", suggested)
        self.assertIn("did you mean HttpPort?", [w for w in warnings if "httpport" in w][0])

    def test_unknown_server_key(self) -> None:
        _, warnings = parse({"DicomWeb": {"Servers": {"s": {"Url": "http://h/", "Token": 3}}}})
        self.assertEqual(warnings, ["unknown configuration key DicomWeb.Servers.s.Token, ignored"])

    def test_server_user_properties(self) -> None:
        """Other string members are user properties (listed by ?expand, kept by to_json), as
        in Orthanc; a misspelt known key is still warned about."""
        config, warnings = parse({"DicomWeb": {"Servers": {"s": {
            "Url": "http://h/", "UserProperty": "Test", "Usrname": "bob", "HasDelete": True,
            "Timeout": 66}}}})
        server = config.dicomweb.servers["s"]
        self.assertEqual(server.user_properties, {"UserProperty": "Test"})
        self.assertEqual(server.to_json()["UserProperty"], "Test")
        described = server.describe()
        self.assertEqual(described["UserProperty"], "Test")
        self.assertEqual(described["HasDelete"], "1")
        self.assertEqual(described["Timeout"], 66)
        self.assertEqual(len(warnings), 1)
        self.assertIn("Usrname", warnings[0])
        plain = parse({"DicomWeb": {"Servers": {"p": ["http://h/"]}}})[0].dicomweb.servers["p"]
        self.assertNotIn("HasDelete", plain.describe())
        self.assertEqual(plain.describe()["Timeout"], 0)

    def test_authentication_without_users(self) -> None:
        config, warnings = parse({"AuthenticationEnabled": True})
        self.assertTrue(config.authentication_enabled)
        self.assertEqual(len(warnings), 1)
        self.assertIn("RegisteredUsers is empty", warnings[0])

    def test_authentication_follows_remote_access_when_unset(self) -> None:
        # Orthanc >= 1.5.8: AuthenticationEnabled defaults to RemoteAccessAllowed.
        config, warnings = parse({"RemoteAccessAllowed": True, "RegisteredUsers": {"a": "b"}})
        self.assertTrue(config.authentication_enabled)
        self.assertEqual(warnings, [])

    def test_remote_access_without_authentication(self) -> None:
        config, warnings = parse({"RemoteAccessAllowed": True, "AuthenticationEnabled": False})
        self.assertFalse(config.authentication_enabled)
        self.assertEqual(len(warnings), 1)
        self.assertIn("AuthenticationEnabled is explicitly false", warnings[0])


class ServerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = self.mktemp()
        os.makedirs(self.dir)
        for name in ("client.crt", "client.key"):
            with open(os.path.join(self.dir, name), "w") as f:
                f.write("PEM\n")

    def test_list_of_one(self) -> None:
        server = parse_server("sample", ["http://192.168.1.1/dicom-web"])
        self.assertEqual(server, RemoteServer(name="sample", url="http://192.168.1.1/dicom-web/"))
        self.assertIsNone(server.username)
        self.assertIsNone(server.timeout)

    def test_list_of_three(self) -> None:
        server = parse_server("s", ["https://h:8443/dicom-web/", "user", "pw"])
        self.assertEqual(
            (server.url, server.username, server.password),
            ("https://h:8443/dicom-web/", "user", "pw"),
        )

    def test_bad_list_lengths(self) -> None:
        for bad in ([], ["http://h/", "user"], ["http://h/", "u", "p", "x"]):
            e = self.assertRaises(ConfigError, parse_server, "s", bad)
            self.assertIn("DicomWeb.Servers.s", str(e))
        e = self.assertRaises(ConfigError, parse_server, "s", ["http://h/", 1, "p"])
        self.assertIn("DicomWeb.Servers.s[1]", str(e))

    def test_object_form(self) -> None:
        value = {
            "Url": "https://h/dicom-web",
            "Username": "u",
            "Password": "p",
            "CertificateFile": "client.crt",
            "CertificateKeyFile": "client.key",
            "CertificateKeyPassword": "kp",
            "HttpHeaders": {"Token": "Hello world"},
            "Timeout": 42,
            "Pkcs11": False,
            "HasDelete": True,
        }
        warnings: list[str] = []
        server = parse_server("full", value, self.dir, warnings)
        self.assertEqual(warnings, [])
        base = os.path.abspath(self.dir)
        self.assertEqual(
            server,
            RemoteServer(
                name="full",
                url="https://h/dicom-web/",
                username="u",
                password="p",
                certificate_file=os.path.join(base, "client.crt"),
                certificate_key_file=os.path.join(base, "client.key"),
                certificate_key_password="kp",
                http_headers={"Token": "Hello world"},
                timeout=42,
                pkcs11=False,
                has_delete=True,
            ),
        )
        # to_json round-trips, describe hides the secrets.
        self.assertEqual(parse_server("full", server.to_json(), "/elsewhere"), server)
        public = server.describe()
        self.assertEqual(public["Url"], "https://h/dicom-web/")
        self.assertEqual(public["Username"], "u")
        self.assertIsNone(public["Password"])
        self.assertIsNone(public["CertificateKeyPassword"])
        self.assertEqual(public["HttpHeaders"], ["Token"])
        self.assertNotIn("p", json.dumps(public["Password"]))
        for secret in ("kp", "Hello world", '"p"'):
            self.assertNotIn(secret, json.dumps(public))

    def test_object_minimal(self) -> None:
        server = parse_server("m", {"Url": "http://h"})
        self.assertEqual(server, RemoteServer(name="m", url="http://h/"))
        self.assertEqual(server.describe()["HttpHeaders"], [])
        self.assertEqual(parse_server("m", server.to_json()), server)

    def test_username_without_password(self) -> None:
        self.assertEqual(parse_server("s", {"Url": "http://h/", "Username": "u"}).password, "")
        e = self.assertRaises(ConfigError, parse_server, "s", {"Url": "http://h/", "Password": "p"})
        self.assertIn("DicomWeb.Servers.s.Password", str(e))

    def test_pkcs11_refused(self) -> None:
        e = self.assertRaises(
            ConfigError,
            parse,
            {"DicomWeb": {"Servers": {"card": {"Url": "http://h/", "Pkcs11": True}}}},
        )
        self.assertIn("DicomWeb.Servers.card.Pkcs11", str(e))
        self.assertIn("'card'", str(e))
        self.assertIn("no PKCS#11 support configured", str(e))

    def test_bad_urls(self) -> None:
        for bad in (
            "ftp://h/",
            "h/dicom-web",
            "http://",
            "http://h:notaport/",
            "",
            1,
            "http://h/#x",
        ):
            e = self.assertRaises(ConfigError, parse_server, "s", [bad])
            self.assertIn("DicomWeb.Servers.s[0]", str(e))
            self.assertIn("http:// or https:// URL", str(e))
        e = self.assertRaises(ConfigError, parse_server, "s", {"Url": "mailto:x"})
        self.assertIn("DicomWeb.Servers.s.Url", str(e))
        e = self.assertRaises(ConfigError, parse_server, "s", {"Username": "u"})
        self.assertIn("DicomWeb.Servers.s.Url: missing", str(e))

    def test_bad_names(self) -> None:
        for bad in ("", "a b", "a/b", "..", "é"):
            e = self.assertRaises(
                ConfigError, parse, {"DicomWeb": {"Servers": {bad: ["http://h/"]}}}
            )
            self.assertIn("DicomWeb.Servers", str(e))
            self.assertIn("invalid server name", str(e))
        self.assertRaises(ConfigError, parse_server, "a/b", ["http://h/"])

    def test_bad_values(self) -> None:
        cases = [
            ({"HttpHeaders": {"Token": 1}}, "DicomWeb.Servers.s.HttpHeaders.Token"),
            ({"HttpHeaders": {"Bad Name": "x"}}, "DicomWeb.Servers.s.HttpHeaders"),
            ({"HttpHeaders": {"X": "a\r\nInjected: 1"}}, "DicomWeb.Servers.s.HttpHeaders.X"),
            ({"HttpHeaders": []}, "DicomWeb.Servers.s.HttpHeaders"),
            ({"Timeout": "60"}, "DicomWeb.Servers.s.Timeout"),
            ({"Timeout": -1}, "DicomWeb.Servers.s.Timeout"),
            ({"Timeout": True}, "DicomWeb.Servers.s.Timeout"),
            ({"HasDelete": "yes"}, "DicomWeb.Servers.s.HasDelete"),
            ({"Pkcs11": 0}, "DicomWeb.Servers.s.Pkcs11"),
            ({"Username": 3}, "DicomWeb.Servers.s.Username"),
            ({"CertificateFile": "missing.crt"}, "DicomWeb.Servers.s.CertificateFile"),
            ({"CertificateKeyFile": "client.key"}, "DicomWeb.Servers.s.CertificateKeyFile"),
        ]
        for extra, path in cases:
            e = self.assertRaises(
                ConfigError, parse_server, "s", {"Url": "http://h/", **extra}, self.dir
            )
            self.assertTrue(str(e).startswith(path), (extra, str(e)))

    def test_timeout(self) -> None:
        self.assertEqual(parse_server("s", {"Url": "http://h/", "Timeout": 2.5}).timeout, 2.5)
        # 0 means "use HttpTimeout", as in Orthanc.
        self.assertIsNone(parse_server("s", {"Url": "http://h/", "Timeout": 0}).timeout)

    def test_certificate_relative_to_config_file(self) -> None:
        path = os.path.join(self.dir, "dwdaemon.json")
        with open(path, "w") as f:
            f.write(
                '{"DicomWeb": {"Servers": {"s": {"Url": "https://h/", '
                '"CertificateFile": "client.crt"}}}}'
            )
        server = load_config(path)[0].dicomweb.servers["s"]
        self.assertEqual(
            server.certificate_file, os.path.join(os.path.abspath(self.dir), "client.crt")
        )
        self.assertIsNone(server.certificate_key_file)

    def test_servers_in_config(self) -> None:
        config, warnings = parse(
            {
                "DicomWeb": {
                    "Servers": {
                        "a": ["http://a/dicom-web/"],
                        "b": ["http://b/", "u", "p"],
                        "c": {"Url": "https://c/", "HasDelete": True},
                    }
                }
            }
        )
        self.assertEqual(warnings, [])
        self.assertEqual(sorted(config.dicomweb.servers), ["a", "b", "c"])
        self.assertTrue(config.dicomweb.servers["c"].has_delete)
        self.assertEqual(config.dicomweb.servers["b"].name, "b")

    def test_direct_construction_adds_slash(self) -> None:
        self.assertEqual(RemoteServer(name="x", url="http://h/dw").url, "http://h/dw/")


class PathTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(self.dir, "conf"))

    def write(self, obj: object) -> str:
        path = os.path.join(self.dir, "conf", "dwdaemon.json")
        with open(path, "w") as f:
            json.dump(obj, f)
        return path

    def test_relative_paths_follow_the_file(self) -> None:
        with open(os.path.join(self.dir, "conf", "ca.pem"), "w") as f:
            f.write("PEM\n")
        path = self.write(
            {
                "StorageDirectory": "data",
                "IndexDirectory": "../index",
                "SslCertificate": "tls/server.pem",
                "HttpsCACertificates": "ca.pem",
            }
        )
        config, warnings = load_config(path)
        conf = os.path.join(self.dir, "conf")
        self.assertEqual(warnings, [])
        self.assertEqual(config.source, path)
        self.assertEqual(config.storage_directory, os.path.join(conf, "data"))
        self.assertEqual(config.index_directory, os.path.join(self.dir, "index"))
        self.assertEqual(config.ssl_certificate, os.path.join(conf, "tls", "server.pem"))
        self.assertEqual(config.https_ca_certificates, os.path.join(conf, "ca.pem"))

    def test_absolute_paths_kept(self) -> None:
        config = load_config(self.write({"StorageDirectory": "/srv/dicom"}))[0]
        self.assertEqual(config.storage_directory, "/srv/dicom")
        self.assertEqual(config.index_directory, "/srv/dicom")

    def test_empty_index_directory_means_storage(self) -> None:
        config = parse({"StorageDirectory": "s", "IndexDirectory": ""})[0]
        self.assertEqual(config.index_directory, "/base/s")

    def test_missing_ca_file(self) -> None:
        e = self.assertRaises(
            ConfigError, load_config, self.write({"HttpsCACertificates": "nope.pem"})
        )
        self.assertIn("HttpsCACertificates: expected an existing file", str(e))
        self.assertEqual(
            load_config(self.write({"HttpsCACertificates": ""}))[0].https_ca_certificates, None
        )

    def test_ssl_needs_certificate(self) -> None:
        e = self.assertRaises(ConfigError, load_config, self.write({"SslEnabled": True}))
        self.assertIn("SslCertificate", str(e))
        self.assertIn(os.path.join(self.dir, "conf", "certificate.pem"), str(e))
        with open(os.path.join(self.dir, "conf", "certificate.pem"), "w") as f:
            f.write("PEM\n")
        config = load_config(self.write({"SslEnabled": True}))[0]
        self.assertTrue(config.ssl_enabled)
        # A missing certificate does not matter while SSL is off.
        self.assertFalse(load_config(self.write({"SslCertificate": "x.pem"}))[0].ssl_enabled)

    def test_unreadable_file(self) -> None:
        e = self.assertRaises(ConfigError, load_config, os.path.join(self.dir, "none.json"))
        self.assertIn("cannot read configuration file", str(e))
        self.assertIn("none.json", str(e))

    def test_error_names_file(self) -> None:
        path = self.write({"HttpTimeout": -5})
        e = self.assertRaises(ConfigError, load_config, path)
        self.assertTrue(str(e).startswith(path + ": HttpTimeout: "), str(e))


class ListenAddressTests(SynchronousTestCase):
    def test_loopback_by_default(self) -> None:
        self.assertEqual(Config().listen_address(), "127.0.0.1")

    def test_all_addresses_with_remote_access(self) -> None:
        self.assertEqual(Config(remote_access_allowed=True).listen_address(), "::")

    def test_explicit_bind_address_wins(self) -> None:
        for remote in (False, True):
            config = Config(remote_access_allowed=remote, http_bind_address="192.0.2.7")
            self.assertEqual(config.listen_address(), "192.0.2.7")

    def test_empty_bind_address_is_unset(self) -> None:
        config = parse({"HttpBindAddress": "", "RemoteAccessAllowed": True})[0]
        self.assertIsNone(config.http_bind_address)
        self.assertEqual(config.listen_address(), "::")


class OverrideTests(SynchronousTestCase):
    def test_index_follows_storage(self) -> None:
        config = Config().with_overrides(storage_directory="/tmp/x", http_port=9999)
        self.assertEqual((config.index_directory, config.http_port), ("/tmp/x", 9999))
        self.assertEqual(Config().http_port, 8042)

    def test_separate_index_kept(self) -> None:
        config = Config(storage_directory="/a", index_directory="/b")
        self.assertEqual(config.with_overrides(storage_directory="/c").index_directory, "/b")
        both = config.with_overrides(storage_directory="/c", index_directory="/d")
        self.assertEqual(both.index_directory, "/d")

    def test_frozen(self) -> None:
        config = Config()
        self.assertRaises(AttributeError, setattr, config, "http_port", 1)

    def test_unknown_field(self) -> None:
        self.assertRaises(TypeError, Config().with_overrides, no_such_field=1)


class SecretTests(SynchronousTestCase):
    def test_passwords_not_echoed(self) -> None:
        e = self.assertRaises(ConfigError, parse, {"RegisteredUsers": {"alice": 987654}})
        self.assertIn("RegisteredUsers.alice", str(e))
        self.assertNotIn("987654", str(e))
        for value in (["http://h/", "u", 987654], {"Url": "http://h/", "Password": 987654}):
            e = self.assertRaises(ConfigError, parse_server, "s", value)
            self.assertNotIn("987654", str(e))
        e = self.assertRaises(
            ConfigError, parse_server, "s", {"Url": "http://h/", "CertificateKeyPassword": 987654}
        )
        self.assertIn("DicomWeb.Servers.s.CertificateKeyPassword", str(e))
        self.assertNotIn("987654", str(e))


class PostgresTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        config = parse({})[0]
        self.assertEqual(config.postgresql, PostgresConfig())
        p = parse({"PostgreSQL": {}})[0].postgresql
        self.assertFalse(p.enable_index)
        self.assertEqual((p.host, p.port, p.database, p.username), ("localhost", 5432, "", ""))
        self.assertIsNone(p.password)
        self.assertIsNone(p.connection_uri)

    def test_values_are_read(self) -> None:
        config, warnings = parse({"PostgreSQL": {
            "EnableIndex": True, "Host": "db.example.org", "Port": 5433, "Database": "pacs",
            "Username": "dw", "Password": "secret",
            "ConnectionUri": "postgresql://dw:secret@db/pacs?sslmode=require"}})
        self.assertEqual(warnings, [])
        self.assertEqual(config.postgresql, PostgresConfig(
            enable_index=True, host="db.example.org", port=5433, database="pacs", username="dw",
            password="secret", connection_uri="postgresql://dw:secret@db/pacs?sslmode=require"))
        self.assertNotIn("secret", repr(config.postgresql))

    def test_empty_uri_means_unset(self) -> None:
        p = parse({"PostgreSQL": {"ConnectionUri": ""}})[0].postgresql
        self.assertIsNone(p.connection_uri)

    def test_errors_name_the_key(self) -> None:
        for section, key in [({"EnableIndex": "yes"}, "PostgreSQL.EnableIndex"),
                             ({"Port": 0}, "PostgreSQL.Port"),
                             ({"Port": "5432"}, "PostgreSQL.Port"),
                             ({"Host": ""}, "PostgreSQL.Host"),
                             ({"Database": 1}, "PostgreSQL.Database"),
                             ({"Username": None}, "PostgreSQL.Username"),
                             ({"ConnectionUri": "mysql://x"}, "PostgreSQL.ConnectionUri")]:
            with self.assertRaises(ConfigError) as cm:
                parse({"PostgreSQL": section})
            self.assertIn(key, str(cm.exception))
        with self.assertRaises(ConfigError) as cm:
            parse({"PostgreSQL": []})
        self.assertIn("PostgreSQL", str(cm.exception))

    def test_secrets_not_echoed(self) -> None:
        for section in ({"Password": 12345678}, {"ConnectionUri": "http://u:hunter2@x"}):
            with self.assertRaises(ConfigError) as cm:
                parse({"PostgreSQL": section})
            self.assertNotIn("12345678", str(cm.exception))
            self.assertNotIn("hunter2", str(cm.exception))

    def test_unknown_key_warned(self) -> None:
        warnings = parse({"PostgreSQL": {"EnableIndx": True}})[1]
        self.assertEqual(len(warnings), 1)
        self.assertIn("PostgreSQL.EnableIndx", warnings[0])
        self.assertIn("PostgreSQL.EnableIndex", warnings[0])

    def test_example_file_shows_every_key(self) -> None:
        with open(EXAMPLE, encoding="utf-8") as f:
            active = strip_comments(f.read())
        for key in POSTGRESQL_KEYS + CORS_KEYS:
            self.assertIn(f'"{key}"', active, key)
