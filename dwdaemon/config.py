"""Orthanc-style JSON configuration.

The file is JSON with ``//`` and ``/* */`` comments (outside strings) and
tolerated trailing commas.  Keys and defaults are Orthanc's (core and the
DICOMweb plugin's ``DicomWeb`` section), plus these extensions:

``HttpBindAddress``
    Address the HTTP server listens on.  Unset (or ``""``): ``127.0.0.1`` when
    ``RemoteAccessAllowed`` is false, else ``::`` (all IPv6 and, on a dual-stack
    host such as Linux with ``net.ipv6.bindv6only=0``, all IPv4 addresses).
``MaximumRequestSize``
    Largest accepted request body in MB other than uploads (0 = no limit); larger get 413.
``MaximumRequestHeadSize``, ``MaximumUploadSize``, ``MaximumConnections``,
``MaximumConnectionsPerClient``, ``MaximumPixelJobs``, ``MaximumPixelQueue``
    Limits against hostile clients (see :mod:`dwdaemon.web.limits` and the README), with
    Orthanc's ``HttpRequestTimeout`` (seconds to receive a request head).
``Workers``
    Worker processes serving the same listening socket(s) (see :mod:`dwdaemon.workers`):
    ``0`` (the default in a file) = the number of CPUs, ``1`` = one process as before.
``WorkerCpuAffinity``
    Each worker process runs on a CPU of its own (default ``true``; only when there are at
    least as many CPUs as workers).
``Cors``
    CORS for browsers on other origins (web viewers): ``Enabled``, ``AllowedOrigins``,
    ``AllowCredentials``, ``MaxAge``, ``AllowedHeaders`` (see :mod:`dwdaemon.web.cors`).

Every key is validated: a wrong type or value raises :class:`ConfigError` whose
message names the key path (``DicomWeb.StowMaxSize``) and what was expected.
Unknown keys are not fatal: they come back as warning strings for the caller to
log.  Relative paths are resolved against the directory of the configuration
file (the current directory when there is no file).

Nothing here imports Twisted.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "ConfigError",
    "Config",
    "CORS_KEYS",
    "CorsConfig",
    "DicomWebConfig",
    "DictionaryEntry",
    "RemoteServer",
    "load_config",
    "parse_config",
    "parse_server",
    "strip_comments",
    "DICOMWEB_KEYS",
    "POSTGRESQL_KEYS",
    "PostgresConfig",
    "SERVER_KEYS",
    "TOP_LEVEL_KEYS",
]


#: Top-level keys understood (the others are warned about).
TOP_LEVEL_KEYS = (
    "Name",
    "HttpPort",
    "HttpBindAddress",
    "StorageDirectory",
    "IndexDirectory",
    "RemoteAccessAllowed",
    "AuthenticationEnabled",
    "RegisteredUsers",
    "SslEnabled",
    "SslCertificate",
    "OverwriteInstances",
    "RecentlyStoredCacheSize",
    "HttpProxy",
    "HttpTimeout",
    "HttpsVerifyPeers",
    "HttpsCACertificates",
    "LimitFindResults",
    "LimitFindInstances",
    "MaximumRequestSize",
    "DefaultEncoding",
    "Dictionary",
    "DefaultPrivateCreator",
    "CaseSensitivePN",
    # Limits against hostile clients (dwdaemon.web.limits).
    "HttpRequestTimeout",
    "MaximumRequestHeadSize",
    "MaximumUploadSize",
    "MaximumConnections",
    "MaximumConnectionsPerClient",
    "MaximumPixelJobs",
    "MaximumPixelQueue",
    "OrthancExplorerEnabled",
    "ExplorerViewerUrl",
    "Workers",
    "WorkerCpuAffinity",
    "DicomWeb",
    "PostgreSQL",
    "MetricsEnabled",
    "MetricsLoopbackWithoutAuth",
    "LogFormat",
    "Cors",
)

#: Keys of the ``Cors`` section (dwdaemon extension: browsers on other origins, e.g. OHIF).
CORS_KEYS = (
    "Enabled",
    "AllowedOrigins",
    "AllowCredentials",
    "MaxAge",
    "AllowedHeaders",
)

#: Keys of the ``PostgreSQL`` section understood (names of Orthanc's PostgreSQL plugin).
POSTGRESQL_KEYS = (
    "EnableIndex",
    "Host",
    "Port",
    "Database",
    "Username",
    "Password",
    "ConnectionUri",
)

#: Keys of the ``DicomWeb`` section understood.
DICOMWEB_KEYS = (
    "Enable",
    "Root",
    "EnableWado",
    "WadoRoot",
    "Host",
    "Ssl",
    "StowMaxInstances",
    "StowMaxSize",
    "QidoCaseSensitive",
    "QidoEmptyNoContent",
    "Servers",
)


class ConfigError(Exception):
    """A configuration value is invalid; the message names the key path."""


# ---------------------------------------------------------------------------
# Data model
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteServer:
    """A remote DICOMweb server (one entry of ``DicomWeb.Servers``)."""

    name: str
    url: str  # always ends with "/"
    username: str | None = None
    password: str | None = None
    certificate_file: str | None = None
    certificate_key_file: str | None = None
    certificate_key_password: str | None = None
    http_headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None  # seconds; None = use Config.http_timeout
    pkcs11: bool = False
    has_delete: bool = False
    #: Other string members of the object form, kept and listed as Orthanc does.
    user_properties: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.url.endswith("/"):
            object.__setattr__(self, "url", self.url + "/")

    def describe(self) -> dict:
        """Orthanc-style public description (for ``?expand``): no secrets.

        As Orthanc does, the password and key fields are present with a ``None``
        value when set, and only the names of the HTTP headers are listed.
        """
        out: dict[str, Any] = {"Url": self.url}
        if self.username is not None:
            out["Username"] = self.username
            out["Password"] = None
        if self.certificate_file is not None:
            out["CertificateFile"] = self.certificate_file
            out["CertificateKeyFile"] = None
            out["CertificateKeyPassword"] = None
        out["HttpHeaders"] = sorted(self.http_headers)
        out["Pkcs11"] = self.pkcs11
        timeout = self.timeout or 0
        out["Timeout"] = int(timeout) if float(timeout).is_integer() else timeout
        if self.has_delete:
            out["HasDelete"] = "1"  # Orthanc's spelling; absent when false
        out.update(self.user_properties)
        return out

    def to_json(self) -> dict:
        """Orthanc-style object with secrets, accepted back by :func:`parse_server`."""
        out: dict[str, Any] = {"Url": self.url}
        if self.username is not None:
            out["Username"] = self.username
        if self.password is not None:
            out["Password"] = self.password
        if self.certificate_file is not None:
            out["CertificateFile"] = self.certificate_file
        if self.certificate_key_file is not None:
            out["CertificateKeyFile"] = self.certificate_key_file
        if self.certificate_key_password is not None:
            out["CertificateKeyPassword"] = self.certificate_key_password
        if self.http_headers:
            out["HttpHeaders"] = dict(self.http_headers)
        if self.timeout is not None:
            out["Timeout"] = self.timeout
        out["Pkcs11"] = self.pkcs11
        out["HasDelete"] = self.has_delete
        out.update(self.user_properties)
        return out


@dataclass(frozen=True)
class DicomWebConfig:
    """The ``DicomWeb`` section (names and defaults of Orthanc's plugin)."""

    enable: bool = True
    root: str = "/dicom-web/"  # starts and ends with "/"
    enable_wado: bool = True
    wado_root: str = "/wado"  # starts with "/", does not end with "/"
    host: str | None = None  # None = take it from the request
    ssl: bool = False
    stow_max_instances: int = 10  # 0 = no limit
    stow_max_size: int = 10  # MB, 0 = no limit
    qido_case_sensitive: bool = True
    qido_empty_no_content: bool = False  # True: an empty QIDO answer is 204 (PS3.18 text)
    servers: Mapping[str, RemoteServer] = field(default_factory=dict)


@dataclass(frozen=True)
class DictionaryEntry:
    """One entry of Orthanc's ``Dictionary``: ``"gggg,eeee": [VR, Name, MinVM, MaxVM, Creator]``.

    ``max_vm`` 0 means unbounded; ``private_creator`` is None for public (non-private) tags.
    """

    tag: int
    vr: str
    name: str
    min_vm: int = 1
    max_vm: int = 1
    private_creator: str | None = None


@dataclass(frozen=True)
class PostgresConfig:
    """The ``PostgreSQL`` section: the shared index (names and defaults of Orthanc's plugin).

    ``""`` for ``database``/``username`` and None for ``password`` leave them to libpq (its
    ``PG*`` environment variables and defaults); ``connection_uri`` wins over the other fields.
    """

    enable_index: bool = False
    host: str = "localhost"
    port: int = 5432
    database: str = ""
    username: str = ""
    password: str | None = dataclasses.field(default=None, repr=False)
    connection_uri: str | None = dataclasses.field(default=None, repr=False)


@dataclass(frozen=True)
class CorsConfig:
    """The ``Cors`` section: which other origins may call the API from a browser.

    ``allowed_origins`` holds serialized origins (``scheme://host[:port]``, lower case) or
    ``("*",)`` for any origin; ``allowed_headers`` adds request headers to the built-in list.
    """

    enabled: bool = False
    allowed_origins: tuple[str, ...] = ("*",)
    allow_credentials: bool = False
    max_age: int = 3600  # seconds a browser may cache a preflight answer
    allowed_headers: tuple[str, ...] = ()


def cpu_count() -> int:
    """The CPUs this process may run on (the default number of ``Workers``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Config:
    """The whole configuration."""

    name: str = "MyOrthanc"
    http_port: int = 8042
    http_bind_address: str | None = None
    storage_directory: str = "OrthancStorage"
    index_directory: str = ""  # "" = same as storage_directory (set in __post_init__)
    remote_access_allowed: bool = False
    authentication_enabled: bool = False
    registered_users: Mapping[str, str] = field(default_factory=dict)
    ssl_enabled: bool = False
    ssl_certificate: str = "certificate.pem"
    overwrite_instances: bool = False
    #: dwdaemon extension: MB of the most recently stored files each process leaves in the
    #: OS page cache; older ones are dropped from it (0 = no limit, the OS decides).
    recently_stored_cache_size: int = 256
    http_proxy: str = ""  # "" or "http://[user:password@]host:port"
    http_timeout: int = 60  # seconds, 0 = no timeout
    https_verify_peers: bool = True
    https_ca_certificates: str | None = None
    #: Largest QIDO-RS answer at the studies/series levels (Orthanc's option, whose own default
    #: is 0 = none): 1,000 bounds the cost of a search without ``limit`` (issue 16).
    limit_find_results: int = 1000
    limit_find_instances: int = 0
    default_encoding: str = "Latin1"  # Orthanc's name; decodes files without 0008,0005
    dictionary: tuple[DictionaryEntry, ...] = ()
    default_private_creator: str = ""
    case_sensitive_pn: bool = False  # Orthanc: PN matching is case-insensitive by default
    maximum_request_size: int = 64  # MB, bodies other than uploads; 0 = no limit
    # Limits against hostile clients (dwdaemon.web.limits):
    http_request_timeout: int = 30  # s to receive a request head (Orthanc's key); 0 = none
    maximum_request_head_size: int = 64  # KB, request line + headers (414/431)
    maximum_upload_size: int = 4096  # MB, STOW-RS and POST /instances bodies; 0 = no limit
    maximum_connections: int = 1000  # open HTTP connections; 0 = no limit (503 beyond)
    maximum_connections_per_client: int = 100  # per client address; 0 = no limit
    maximum_pixel_jobs: int = 2  # concurrent rendering/transcoding/decoding threads
    maximum_pixel_queue: int = 64  # pixel jobs waiting before 503; 0 = no limit
    orthanc_explorer_enabled: bool = True  # the web page at "/"
    explorer_viewer_url: str = ""  # "" = no "open in viewer"; {StudyInstanceUID} is replaced
    dicomweb: DicomWebConfig = field(default_factory=DicomWebConfig)
    postgresql: PostgresConfig = field(default_factory=PostgresConfig)
    cors: CorsConfig = field(default_factory=CorsConfig)
    metrics_enabled: bool = True  # GET /metrics and /tools/metrics-prometheus
    metrics_loopback_without_auth: bool = False  # loopback scrapers need no credentials
    log_format: str = "text"  # "text" or "json" (one JSON object per line)
    workers: int = field(default_factory=cpu_count)  # processes serving the socket(s)
    worker_cpu_affinity: bool = True  # each worker on a CPU of its own (see workers.py)
    source: str | None = None

    def __post_init__(self) -> None:
        if not self.index_directory:
            object.__setattr__(self, "index_directory", self.storage_directory)

    def listen_address(self) -> str:
        """The address the HTTP server binds to.

        ``HttpBindAddress`` when set; otherwise ``127.0.0.1`` when remote access
        is not allowed, else ``::`` (dual stack on hosts where IPv6 sockets also
        accept IPv4, the Linux default).
        """
        if self.http_bind_address:
            return self.http_bind_address
        return "::" if self.remote_access_allowed else "127.0.0.1"

    def with_overrides(self, **kw: Any) -> Config:
        """A copy with some fields replaced (``dataclasses.replace``).

        When ``storage_directory`` is replaced and the index was stored with the
        files, the index directory follows, unless it is given too.
        """
        if (
            "storage_directory" in kw
            and "index_directory" not in kw
            and self.index_directory == self.storage_directory
        ):
            kw["index_directory"] = kw["storage_directory"]
        return dataclasses.replace(self, **kw)


# ---------------------------------------------------------------------------
# Comments and trailing commas
# ---------------------------------------------------------------------------


def _blank(text: str) -> str:
    """Spaces in place of ``text``, newlines kept (so line numbers survive)."""
    return "".join(c if c in "\r\n" else " " for c in text)


def _string_end(text: str, i: int) -> int:
    """Index of the quote closing the JSON string opened at ``text[i]`` (or where it breaks:
    an unterminated string is left for the JSON parser to report)."""
    i += 1
    n = len(text)
    while i < n and text[i] != '"':
        if text[i] == "\\":
            i += 1
        elif text[i] == "\n":
            break
        i += 1
    return i


def strip_comments(text: str) -> str:
    """Remove ``//`` and ``/* */`` comments outside JSON strings.

    Comments become spaces (newlines kept) so JSON error positions still point
    at the right line and column.
    """
    out: list[str] = []
    i, n = 0, len(text)
    start = 0  # start of the pending verbatim chunk
    while i < n:
        c = text[i]
        if c == '"':
            i = _string_end(text, i) + 1
        elif c == "/" and i + 1 < n and text[i + 1] == "/":
            out.append(text[start:i])
            end = i + 2
            while end < n and text[end] not in "\r\n":
                end += 1
            out.append(_blank(text[i:end]))
            i = start = end
        elif c == "/" and i + 1 < n and text[i + 1] == "*":
            end = text.find("*/", i + 2)
            if end < 0:
                line = text.count("\n", 0, i) + 1
                raise ConfigError(f"unterminated /* comment starting at line {line}")
            end += 2
            out.append(text[start:i])
            out.append(_blank(text[i:end]))
            i = start = end
        else:
            i += 1
    out.append(text[start:])
    return "".join(out)


def _strip_trailing_commas(text: str) -> str:
    """Replace by a space each comma (outside strings) followed by ``]`` or ``}``."""
    chars = list(text)
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            i = _string_end(text, i)
        elif c == ",":
            j = i + 1
            while j < n and text[j] in " \t\r\n":
                j += 1
            if j < n and text[j] in "]}":
                chars[i] = " "
        i += 1
    return "".join(chars)


# ---------------------------------------------------------------------------
# Value checkers: each takes the key path and the raw JSON value
# ---------------------------------------------------------------------------


def _describe_json(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _fail(path: str, expected: str, value: object, secret: bool = False) -> ConfigError:
    """The error for ``value`` at ``path``; a ``secret`` value is not repeated."""
    shown = None
    if not secret and isinstance(value, bool | int | float | str):
        shown = json.dumps(value)
    got = (
        f"{_describe_json(value)} {shown}" if shown and len(shown) <= 60 else _describe_json(value)
    )
    return ConfigError(f"{path}: expected {expected}, got {got}")


def _bool(path: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise _fail(path, "a boolean (true or false)", value)
    return value


def _int(path: str, value: object, minimum: int = 0, maximum: int | None = None) -> int:
    if maximum is None:
        expected = f"an integer >= {minimum}"
    else:
        expected = f"an integer between {minimum} and {maximum}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(path, expected, value)
    if value < minimum or (maximum is not None and value > maximum):
        raise _fail(path, expected, value)
    return value


def _str(path: str, value: object, *, nonempty: bool = False) -> str:
    if not isinstance(value, str):
        raise _fail(path, "a non-empty string" if nonempty else "a string", value)
    if nonempty and not value.strip():
        raise _fail(path, "a non-empty string", value)
    return value


def _secret(path: str, value: object) -> str | None:
    """A password: a string or ``null`` (not set); never echoed in errors."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise _fail(path, "a string", value, secret=True)
    return value


def _optional_str(path: str, value: object) -> str | None:
    """A string where ``""`` and ``null`` mean "not set"."""
    if value is None:
        return None
    return _str(path, value) or None


def _object(path: str, value: object) -> dict:
    if not isinstance(value, dict):
        raise _fail(path, "an object", value)
    return value


def _resolve(base_dir: str, path: str) -> str:
    return os.path.normpath(os.path.join(base_dir, path))


_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 9110 token (header name)
_SERVER_NAME = re.compile(r"^[A-Za-z0-9._~-]+$")  # RFC 3986 unreserved characters
_HOST = re.compile(r"^[^\s/?#@\\]+$")


def _root(path: str, value: object) -> str:
    """A URL path, normalised to start and end with ``/``."""
    s = _str(path, value, nonempty=True)
    if re.search(r"[\s?#\\%]", s) or "//" in s.strip("/"):
        raise _fail(path, 'a URL path such as "/dicom-web/"', value)
    return "/" + s.strip("/") + "/" if s.strip("/") else "/"


def _wado_root(path: str, value: object) -> str:
    """A URL path, normalised to start with ``/`` and not end with ``/``."""
    s = _str(path, value, nonempty=True)
    if re.search(r"[\s?#\\%]", s) or "//" in s.strip("/") or not s.strip("/"):
        raise _fail(path, 'a URL path other than "/", such as "/wado"', value)
    return "/" + s.strip("/")


def _url(path: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(path, "an http:// or https:// URL", value)
    s = value
    try:
        parts = urlsplit(s)
        parts.port  # noqa: B018 -- raises ValueError on a bad port
    except ValueError:
        raise _fail(path, "an http:// or https:// URL", value) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or re.search(r"\s", s):
        raise _fail(path, "an http:// or https:// URL", value)
    if parts.fragment:
        raise _fail(path, "an http:// or https:// URL without a #fragment", value)
    return s if s.endswith("/") else s + "/"


def _proxy(path: str, value: object) -> str:
    """``""`` or ``[http://][user:password@]host:port``, normalised with ``http://``."""
    s = _str(path, value).strip()
    if not s:
        return ""
    expected = 'an HTTP proxy as "host:port", "http://host:port" or "user:password@host:port"'
    candidate = s if "://" in s else "http://" + s
    try:
        parts = urlsplit(candidate)
        port = parts.port
    except ValueError:
        raise _fail(path, expected, value) from None
    if (
        parts.scheme != "http"
        or not parts.hostname
        or port is None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or re.search(r"\s", s)
    ):
        raise _fail(path, expected, value)
    return candidate.rstrip("/")


def _existing_file(path: str, value: object, base_dir: str) -> str:
    s = _str(path, value, nonempty=True)
    resolved = _resolve(base_dir, s)
    if not os.path.isfile(resolved):
        raise ConfigError(f"{path}: expected an existing file, {resolved!r} does not exist")
    return resolved


class _Section:
    """Reads the keys of one JSON object, remembering which were used."""

    def __init__(self, path: str, obj: dict, warnings: list[str], known: tuple[str, ...]) -> None:
        self.prefix = path + "." if path else ""
        self.obj = obj
        self.warnings = warnings
        self.known = known

    def path(self, key: str) -> str:
        return self.prefix + key

    def has(self, key: str) -> bool:
        return key in self.obj

    def get(self, key: str, check: Callable[[str, object], Any], default: Any) -> Any:
        assert key in self.known, key
        if key not in self.obj:
            return default
        return check(self.path(key), self.obj[key])

    def warn_unknown(self) -> None:
        known = list(self.known)
        for key in self.obj:
            if key in self.known:
                continue
            message = f"unknown configuration key {self.path(key)}, ignored"
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.8)
            if not close:
                lower = {k.lower(): k for k in known}
                close = [lower[key.lower()]] if key.lower() in lower else []
            if close:
                message += f" (did you mean {self.path(close[0])}?)"
            self.warnings.append(message)


# ---------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------


#: Keys of the object form of a server entry.
SERVER_KEYS = (
    "Url",
    "Username",
    "Password",
    "CertificateFile",
    "CertificateKeyFile",
    "CertificateKeyPassword",
    "HttpHeaders",
    "Timeout",
    "Pkcs11",
    "HasDelete",
)


def _headers(path: str, value: object) -> dict[str, str]:
    obj = _object(path, value)
    out: dict[str, str] = {}
    for key, val in obj.items():
        if not _TOKEN.match(key):
            raise ConfigError(f"{path}: {key!r} is not a valid HTTP header name")
        if not isinstance(val, str) or "\r" in val or "\n" in val:
            raise _fail(f"{path}.{key}", "a string without line breaks", val)
        out[key] = val
    return out


def _timeout(path: str, value: object) -> float | None:
    """Seconds; ``0`` or ``null`` mean "use HttpTimeout" as in Orthanc."""
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise _fail(path, "a number of seconds >= 0 (0 = use HttpTimeout)", value)
    return value or None


def _check_server_name(name: object, path: str = "DicomWeb.Servers") -> str:
    if not isinstance(name, str) or not _SERVER_NAME.match(name) or name in (".", ".."):
        raise ConfigError(
            f"{path}: invalid server name {name!r}, expected a non-empty name made of "
            "letters, digits and -._~"
        )
    return name


def parse_server(
    name: str,
    value: object,
    base_dir: str = ".",
    warnings: list[str] | None = None,
) -> RemoteServer:
    """Parse one ``DicomWeb.Servers`` entry (also the body of ``PUT servers/{name}``).

    Accepts ``["url"]``, ``["url", "user", "password"]`` or the object form
    (``Url``, ``Username``, ``Password``, ``CertificateFile``,
    ``CertificateKeyFile``, ``CertificateKeyPassword``, ``HttpHeaders``,
    ``Timeout``, ``Pkcs11``, ``HasDelete``).  Unknown keys of the object form are
    appended to ``warnings`` when a list is given.  Certificate files must exist.
    """
    _check_server_name(name)
    path = f"DicomWeb.Servers.{name}"
    base_dir = os.path.abspath(base_dir)
    if isinstance(value, list):
        if len(value) not in (1, 3):
            raise _fail(path, '["url"] or ["url", "username", "password"] or an object', value)
        url = _url(path + "[0]", value[0])
        if len(value) == 1:
            return RemoteServer(name=name, url=url)
        return RemoteServer(
            name=name,
            url=url,
            username=_str(path + "[1]", value[1], nonempty=True),
            password=_secret(path + "[2]", value[2]) or "",
        )
    if not isinstance(value, dict):
        raise _fail(path, '["url"] or ["url", "username", "password"] or an object', value)

    sec = _Section(path, value, warnings if warnings is not None else [], SERVER_KEYS)
    if not sec.has("Url"):
        raise ConfigError(f"{path}.Url: missing, expected an http:// or https:// URL")
    url = sec.get("Url", _url, None)
    username = sec.get("Username", _optional_str, None)
    password = sec.get("Password", _secret, None)
    if password is not None and username is None:
        raise ConfigError(f"{path}.Password: given without {path}.Username")
    if username is not None and password is None:
        password = ""

    def file_(p: str, v: object) -> str | None:
        if v is None or v == "":
            return None
        return _existing_file(p, v, base_dir)

    cert = sec.get("CertificateFile", file_, None)
    key = sec.get("CertificateKeyFile", file_, None)
    key_password = sec.get("CertificateKeyPassword", _secret, None)
    if key is not None and cert is None:
        raise ConfigError(f"{path}.CertificateKeyFile: given without {path}.CertificateFile")
    if key_password is not None and cert is None:
        raise ConfigError(f"{path}.CertificateKeyPassword: given without {path}.CertificateFile")
    headers = sec.get("HttpHeaders", _headers, {})
    timeout = sec.get("Timeout", _timeout, None)
    pkcs11 = sec.get("Pkcs11", _bool, False)
    if pkcs11:
        raise ConfigError(
            f"{path}.Pkcs11: server {name!r} asks for PKCS#11 client authentication, "
            "but there is no PKCS#11 support configured (dwdaemon has none); remove Pkcs11 "
            "or use CertificateFile/CertificateKeyFile"
        )
    has_delete = sec.get("HasDelete", _bool, False)
    user_properties = _user_properties(value)
    sec.known = (*sec.known, *user_properties)
    sec.warn_unknown()
    return RemoteServer(
        name=name,
        url=url,
        username=username,
        password=password,
        certificate_file=cert,
        certificate_key_file=key,
        certificate_key_password=key_password,
        http_headers=headers,
        timeout=timeout,
        pkcs11=pkcs11,
        has_delete=has_delete,
        user_properties=user_properties,
    )


def _user_properties(obj: dict) -> dict[str, str]:
    """Unknown string members of a server object: Orthanc keeps them as user properties.

    A key that looks like a misspelt known key (``Usrname``) is not one: it is warned about.
    """
    lower = {k.lower() for k in SERVER_KEYS}
    return {k: v for k, v in obj.items()
            if k not in SERVER_KEYS and isinstance(v, str) and k.lower() not in lower
            and not difflib.get_close_matches(k, SERVER_KEYS, n=1, cutoff=0.8)}


# ---------------------------------------------------------------------------
# Whole file
# ---------------------------------------------------------------------------


def _users(path: str, value: object) -> dict[str, str]:
    obj = _object(path, value)
    out: dict[str, str] = {}
    for user, password in obj.items():
        if not user or ":" in user:
            raise ConfigError(f"{path}: invalid user name {user!r} (empty or containing ':')")
        if not isinstance(password, str):
            raise _fail(f"{path}.{user}", "a string (the password)", password, secret=True)
        out[user] = password
    return out


def _host(path: str, value: object) -> str | None:
    s = _optional_str(path, value)
    if s is not None and not _HOST.match(s):
        raise _fail(path, 'a host name, optionally with a port, such as "example.org:8042"', value)
    return s


def _bind_address(path: str, value: object) -> str | None:
    s = _optional_str(path, value)
    if s is not None and not re.match(r"^[0-9A-Za-z.:%_-]+$", s):
        raise _fail(path, 'an IP address such as "127.0.0.1" or "::"', value)
    return s


def _dicomweb(obj: object, base_dir: str, warnings: list[str]) -> DicomWebConfig:
    sec = _Section("DicomWeb", _object("DicomWeb", obj), warnings, DICOMWEB_KEYS)
    d = DicomWebConfig()
    servers_obj = sec.get("Servers", _object, {})
    servers: dict[str, RemoteServer] = {}
    for name, value in servers_obj.items():
        servers[name] = parse_server(name, value, base_dir, warnings)
    out = DicomWebConfig(
        enable=sec.get("Enable", _bool, d.enable),
        root=sec.get("Root", _root, d.root),
        enable_wado=sec.get("EnableWado", _bool, d.enable_wado),
        wado_root=sec.get("WadoRoot", _wado_root, d.wado_root),
        host=sec.get("Host", _host, d.host),
        ssl=sec.get("Ssl", _bool, d.ssl),
        stow_max_instances=sec.get("StowMaxInstances", _int, d.stow_max_instances),
        stow_max_size=sec.get("StowMaxSize", _int, d.stow_max_size),
        qido_case_sensitive=sec.get("QidoCaseSensitive", _bool, d.qido_case_sensitive),
        qido_empty_no_content=sec.get("QidoEmptyNoContent", _bool, d.qido_empty_no_content),
        servers=servers,
    )
    sec.warn_unknown()
    return out


def _connection_uri(path: str, value: object) -> str | None:
    """A ``postgresql://`` (or ``postgres://``) URI; ``""``/``null`` mean "not set"."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not re.match(r"^postgres(ql)?://\S*$", value):
        raise _fail(path, 'a URI such as "postgresql://user:password@host:5432/database"',
                    value, secret=True)
    return value


def _postgresql(obj: object, warnings: list[str]) -> PostgresConfig:
    sec = _Section("PostgreSQL", _object("PostgreSQL", obj), warnings, POSTGRESQL_KEYS)
    d = PostgresConfig()
    out = PostgresConfig(
        enable_index=sec.get("EnableIndex", _bool, d.enable_index),
        host=sec.get("Host", _nonempty, d.host),
        port=sec.get("Port", lambda p, v: _int(p, v, 1, 65535), d.port),
        database=sec.get("Database", _str, d.database),
        username=sec.get("Username", _str, d.username),
        password=sec.get("Password", _secret, d.password),
        connection_uri=sec.get("ConnectionUri", _connection_uri, d.connection_uri),
    )
    sec.warn_unknown()
    return out


_ORIGIN = re.compile(r"^https?://[^\s/?#@\\]+$")


def _origins(path: str, value: object) -> tuple[str, ...]:
    """``"*"``, or a list of origins such as ``"http://localhost:3000"`` (or ``"*"``)."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise _fail(path, 'an array of origins such as ["http://localhost:3000"], or "*"', value)
    out: list[str] = []
    for i, item in enumerate(items):
        if item == "*":
            return ("*",)
        origin = item.rstrip("/").lower() if isinstance(item, str) else item
        if not isinstance(origin, str) or not _ORIGIN.match(origin):
            raise _fail(f"{path}[{i}]", 'an origin such as "http://localhost:3000" '
                        "(scheme, host and port only; no path)", item)
        out.append(origin)
    return tuple(out)


def _header_names(path: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _fail(path, 'an array of HTTP header names such as ["X-Request-Id"]', value)
    for i, name in enumerate(value):
        if not isinstance(name, str) or not _TOKEN.match(name):
            raise _fail(f"{path}[{i}]", "an HTTP header name", name)
    return tuple(value)


def _cors(obj: object, warnings: list[str]) -> CorsConfig:
    sec = _Section("Cors", _object("Cors", obj), warnings, CORS_KEYS)
    d = CorsConfig()
    out = CorsConfig(
        enabled=sec.get("Enabled", _bool, d.enabled),
        allowed_origins=sec.get("AllowedOrigins", _origins, d.allowed_origins),
        allow_credentials=sec.get("AllowCredentials", _bool, d.allow_credentials),
        max_age=sec.get("MaxAge", _int, d.max_age),
        allowed_headers=sec.get("AllowedHeaders", _header_names, d.allowed_headers),
    )
    sec.warn_unknown()
    if out.allow_credentials and "*" in out.allowed_origins:
        raise ConfigError(
            'Cors.AllowCredentials: true needs Cors.AllowedOrigins to list the origins, not "*" '
            "(any web site could otherwise read the store with the browser's credentials)"
        )
    if out.enabled and not out.allowed_origins:
        warnings.append("Cors.Enabled is true but Cors.AllowedOrigins is empty: "
                        "no origin gets CORS headers")
    return out


def _loads(text: str) -> tuple[object, list[str]]:
    """JSON (comments and trailing commas allowed); duplicate keys are warnings."""
    duplicates: list[str] = []

    def pairs(items: list[tuple[str, object]]) -> dict:
        out: dict[str, object] = {}
        for key, value in items:
            if key in out:
                duplicates.append(f"duplicate configuration key {key}, the last value is used")
            out[key] = value
        return out

    def constant(name: str) -> object:
        raise ValueError(f"{name} is not valid JSON")

    cleaned = _strip_trailing_commas(strip_comments(text.lstrip("\ufeff")))
    try:
        data = json.loads(cleaned, object_pairs_hook=pairs, parse_constant=constant)
    except json.JSONDecodeError as e:
        raise ConfigError(f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    except ValueError as e:
        raise ConfigError(f"invalid JSON: {e}") from None
    return data, duplicates


def parse_config(
    text: str, base_dir: str = ".", source: str | None = None
) -> tuple[Config, list[str]]:
    """Parse and validate a configuration text; answer ``(config, warnings)``.

    Relative paths are resolved against ``base_dir``.  Raises :class:`ConfigError`.
    """
    try:
        return _parse_config(text, base_dir, source)
    except ConfigError as e:
        if source:
            raise ConfigError(f"{source}: {e}") from None
        raise


def _parse_config(text: str, base_dir: str, source: str | None) -> tuple[Config, list[str]]:
    base_dir = os.path.abspath(base_dir)
    data, warnings = _loads(text)
    if not isinstance(data, dict):
        raise ConfigError(f"expected a JSON object at the top level, got {_describe_json(data)}")
    sec = _Section("", data, warnings, TOP_LEVEL_KEYS)
    d = Config()

    storage = _resolve(base_dir, sec.get("StorageDirectory", _nonempty, d.storage_directory))
    index = sec.get("IndexDirectory", _str, "")
    index = _resolve(base_dir, index) if index else storage
    remote = sec.get("RemoteAccessAllowed", _bool, d.remote_access_allowed)
    # Orthanc >= 1.5.8: when not set, authentication is enabled iff remote access is allowed.
    auth_explicit = sec.has("AuthenticationEnabled")
    auth = sec.get("AuthenticationEnabled", _bool, remote)
    users = sec.get("RegisteredUsers", _users, {})
    ssl = sec.get("SslEnabled", _bool, d.ssl_enabled)
    cert = _resolve(base_dir, sec.get("SslCertificate", _nonempty, d.ssl_certificate))
    if ssl and not os.path.isfile(cert):
        raise ConfigError(
            f"SslCertificate: SslEnabled is true but the certificate file {cert!r} does not "
            "exist (expected a PEM file holding the certificate and its private key)"
        )
    ca = sec.get("HttpsCACertificates", _optional_str, None)
    if ca is not None:
        ca = _existing_file("HttpsCACertificates", ca, base_dir)
    dicomweb = sec.get("DicomWeb", lambda p, v: _dicomweb(v, base_dir, warnings), DicomWebConfig())
    postgresql = sec.get("PostgreSQL", lambda p, v: _postgresql(v, warnings), PostgresConfig())
    cors = sec.get("Cors", lambda p, v: _cors(v, warnings), CorsConfig())

    config = Config(
        name=sec.get("Name", _str, d.name),
        http_port=sec.get("HttpPort", lambda p, v: _int(p, v, 1, 65535), d.http_port),
        http_bind_address=sec.get("HttpBindAddress", _bind_address, None),
        storage_directory=storage,
        index_directory=index,
        remote_access_allowed=remote,
        authentication_enabled=auth,
        registered_users=users,
        ssl_enabled=ssl,
        ssl_certificate=cert,
        overwrite_instances=sec.get("OverwriteInstances", _bool, d.overwrite_instances),
        recently_stored_cache_size=sec.get("RecentlyStoredCacheSize", _int,
                                           d.recently_stored_cache_size),
        http_proxy=sec.get("HttpProxy", _proxy, d.http_proxy),
        http_timeout=sec.get("HttpTimeout", _int, d.http_timeout),
        https_verify_peers=sec.get("HttpsVerifyPeers", _bool, d.https_verify_peers),
        https_ca_certificates=ca,
        limit_find_results=sec.get("LimitFindResults", _int, d.limit_find_results),
        limit_find_instances=sec.get("LimitFindInstances", _int, d.limit_find_instances),
        maximum_request_size=sec.get("MaximumRequestSize", _int, d.maximum_request_size),
        default_encoding=sec.get("DefaultEncoding", _encoding, d.default_encoding),
        dictionary=sec.get("Dictionary", _dictionary, d.dictionary),
        default_private_creator=sec.get("DefaultPrivateCreator", _str,
                                        d.default_private_creator),
        case_sensitive_pn=sec.get("CaseSensitivePN", _bool, d.case_sensitive_pn),
        **_limit_keys(sec, d),
        orthanc_explorer_enabled=sec.get("OrthancExplorerEnabled", _bool,
                                         d.orthanc_explorer_enabled),
        explorer_viewer_url=sec.get("ExplorerViewerUrl", _viewer_url, d.explorer_viewer_url),
        dicomweb=dicomweb,
        postgresql=postgresql,
        cors=cors,
        metrics_enabled=sec.get("MetricsEnabled", _bool, d.metrics_enabled),
        metrics_loopback_without_auth=sec.get("MetricsLoopbackWithoutAuth", _bool,
                                              d.metrics_loopback_without_auth),
        log_format=sec.get("LogFormat", _log_format, d.log_format),
        workers=sec.get("Workers", _workers, 0) or cpu_count(),
        worker_cpu_affinity=sec.get("WorkerCpuAffinity", _bool, d.worker_cpu_affinity),
        source=source,
    )
    sec.warn_unknown()

    if auth and not users:
        warnings.append(
            "AuthenticationEnabled is true but RegisteredUsers is empty: "
            "every request will be refused with 401"
        )
    if remote and not auth and auth_explicit:
        warnings.append(
            "RemoteAccessAllowed is true while AuthenticationEnabled is explicitly false: "
            "anyone who can reach the port can read and change the store"
        )
    return config, warnings


def _encoding(path: str, value: object) -> str:
    from dwdaemon.dicom.encodings import ENCODINGS, canonical_name

    name = canonical_name(value) if isinstance(value, str) else None
    if name is None:
        raise _fail(path, "one of " + ", ".join(ENCODINGS), value)
    return name


_VRS = frozenset((
    "AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "OB", "OD", "OF", "OL",
    "OV", "OW", "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UN", "UR", "US",
    "UT", "UV"))


def _dictionary(path: str, value: object) -> tuple[DictionaryEntry, ...]:
    """Orthanc's ``Dictionary``: ``{"gggg,eeee": ["VR", "Name", min, max, "creator"]}``."""
    entries = []
    for key, spec in _object(path, value).items():
        where = f"{path}.{key}"
        text = key.replace(",", "").replace("(", "").replace(")", "").strip()
        if len(text) != 8 or any(c not in "0123456789abcdefABCDEF" for c in text):
            raise _fail(where, 'a tag written "gggg,eeee"', key)
        if (not isinstance(spec, list) or not 2 <= len(spec) <= 5
                or not all(isinstance(x, str) for x in spec[:2])):
            raise _fail(where, "[VR, Name, MinMultiplicity, MaxMultiplicity, PrivateCreator]",
                        spec)
        vr = spec[0].upper()
        if vr not in _VRS:
            raise _fail(where, "a DICOM VR as first item", spec[0])
        min_vm = _int(where, spec[2]) if len(spec) > 2 else 1
        max_vm = _int(where, spec[3]) if len(spec) > 3 else 1
        creator = spec[4] if len(spec) > 4 else None
        if creator is not None and not isinstance(creator, str):
            raise _fail(where, "a private creator string as fifth item", creator)
        entries.append(DictionaryEntry(int(text, 16), vr, spec[1], min_vm, max_vm,
                                       creator or None))
    return tuple(entries)


def _limit_keys(sec: _Section, d: Config) -> dict[str, int]:
    """The limits against hostile clients.  A file that sets ``MaximumRequestSize`` but not
    ``MaximumUploadSize`` keeps the old meaning (one limit for every body, uploads included)."""
    upload_default = (sec.get("MaximumRequestSize", _int, d.maximum_request_size)
                      if sec.has("MaximumRequestSize") else d.maximum_upload_size)
    return {
        "http_request_timeout": sec.get("HttpRequestTimeout", _int, d.http_request_timeout),
        "maximum_request_head_size": sec.get(
            "MaximumRequestHeadSize", lambda p, v: _int(p, v, 1, 1024 * 1024),
            d.maximum_request_head_size),
        "maximum_upload_size": sec.get("MaximumUploadSize", _int, upload_default),
        "maximum_connections": sec.get("MaximumConnections", _int, d.maximum_connections),
        "maximum_connections_per_client": sec.get(
            "MaximumConnectionsPerClient", _int, d.maximum_connections_per_client),
        "maximum_pixel_jobs": sec.get("MaximumPixelJobs", lambda p, v: _int(p, v, 1, 256),
                                      d.maximum_pixel_jobs),
        "maximum_pixel_queue": sec.get("MaximumPixelQueue", _int, d.maximum_pixel_queue),
    }


def _workers(path: str, value: object) -> int:
    return _int(path, value, 0, 1024)


def _log_format(path: str, value: object) -> str:
    text = _str(path, value).lower()
    if text not in ("text", "json"):
        raise _fail(path, '"text" or "json"', value)
    return text


def _viewer_url(path: str, value: object) -> str:
    """``""`` or an http(s) URL (absolute, or a path starting with ``/``) of a web viewer."""
    s = _str(path, value)
    if s and not (re.match(r"^https?://[^\s/]+\S*$", s) or re.match(r"^/\S*$", s)):
        raise _fail(path, 'an http(s) URL or a path such as '
                          '"/ohif/viewer?StudyInstanceUIDs={StudyInstanceUID}"', value)
    return s


def _nonempty(path: str, value: object) -> str:
    return _str(path, value, nonempty=True)


def load_config(path: str | None) -> tuple[Config, list[str]]:
    """Load a configuration file; ``None`` gives the defaults resolved against the cwd."""
    if path is None:
        return parse_config("{}", os.getcwd(), None)
    full = os.path.abspath(path)
    try:
        with open(full, encoding="utf-8-sig") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read configuration file {full!r}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{full}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    return parse_config(text, os.path.dirname(full), full)
