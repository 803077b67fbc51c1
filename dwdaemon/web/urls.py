"""URLs as clients see this server: the DICOMweb root, base URL behind proxies, resource URLs."""

from __future__ import annotations

from twisted.web.iweb import IRequest

from dwdaemon.config import Config


def _header(request: IRequest, name: str) -> str | None:
    value = request.getHeader(name)
    if value is None:
        return None
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _parse_forwarded(value: str) -> dict[str, str]:
    """The first element of an RFC 7239 ``Forwarded`` header."""
    first = value.split(",", 1)[0]
    out: dict[str, str] = {}
    for pair in first.split(";"):
        name, sep, val = pair.strip().partition("=")
        if sep:
            out[name.strip().lower()] = val.strip().strip('"')
    return out


_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def _bare_address(address: str) -> str:
    address = address.strip("[]").lower()
    return address[7:] if address.startswith("::ffff:") and "." in address else address


def host_with_port(host: str, local_host: str, local_port: int, scheme: str) -> str:
    """``host`` (a ``Host`` header) with the port the request arrived on, when it has none and
    names the address the connection reached (a client that connected directly and left the
    port out, as ``dicomweb-client`` sends ``Host: 127.0.0.1``); other names (a proxy, a virtual
    host) are kept as sent, as Orthanc does. The scheme's default port is never added."""
    has_port = ("]:" in host) if host.startswith("[") else (":" in host)
    if has_port or not local_port or local_port == (443 if scheme == "https" else 80):
        return host
    name, local = _bare_address(host), _bare_address(local_host)
    if name == local or (name in _LOOPBACK_NAMES and (local in _LOOPBACK_NAMES
                                                       or local.startswith("127."))):
        return f"{host}:{local_port}"
    return host


class Urls:
    """URL helpers of one configuration (a value: no services)."""

    def __init__(self, config: Config) -> None:
        self.config = config

    @property
    def root(self) -> str:
        """The DICOMweb root, with leading and trailing slash (``/dicom-web/``)."""
        return self.config.dicomweb.root

    def dw(self, path: str = "") -> str:
        """A path under the DICOMweb root: ``dw("studies")`` -> ``/dicom-web/studies``."""
        return self.root + path.lstrip("/")

    def base_url(self, request: IRequest) -> str:
        """``scheme://host[:port]`` as clients see this server.

        The ``Host``/``Ssl`` options win; else ``Forwarded``, else ``X-Forwarded-Host`` /
        ``X-Forwarded-Proto``, else the ``Host`` header and the connection's security (see
        :func:`host_with_port` for a ``Host`` without a port).
        """
        options = self.config.dicomweb
        if options.host:
            return ("https://" if options.ssl else "http://") + options.host
        scheme = "https" if request.isSecure() else "http"
        host = None
        forwarded = _header(request, "forwarded")
        if forwarded:
            parts = _parse_forwarded(forwarded)
            host = parts.get("host")
            scheme = parts.get("proto", scheme)
        if host is None:
            xf_host = _header(request, "x-forwarded-host")
            if xf_host:
                host = xf_host.split(",", 1)[0].strip()
                xf_proto = _header(request, "x-forwarded-proto")
                if xf_proto:
                    scheme = xf_proto.split(",", 1)[0].strip()
        if host is None:
            host = _header(request, "host")
            xf_proto = _header(request, "x-forwarded-proto")
            if xf_proto:
                scheme = xf_proto.split(",", 1)[0].strip()
            elif host and not options.ssl:
                address = request.getHost()
                host = host_with_port(host, getattr(address, "host", ""),
                                      getattr(address, "port", 0), scheme)
        if not host:
            address = request.getHost()
            host = f"{address.host}:{address.port}"
        if options.ssl:
            scheme = "https"
        return f"{scheme}://{host}"

    def dicomweb_url(self, request: IRequest) -> str:
        """The absolute DICOMweb root URL without trailing slash."""
        return self.base_url(request) + self.root.rstrip("/")

    def study_url(self, request: IRequest, study: str) -> str:
        return f"{self.dicomweb_url(request)}/studies/{study}"

    def series_url(self, request: IRequest, study: str, series: str) -> str:
        return f"{self.study_url(request, study)}/series/{series}"

    def instance_url(self, request: IRequest, study: str, series: str, sop: str) -> str:
        return f"{self.series_url(request, study, series)}/instances/{sop}"
