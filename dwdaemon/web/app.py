"""Compose the Klein app: core REST API, DICOMweb routes under Root, WADO-URI under WadoRoot."""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from klein import Klein

from dwdaemon.config import Config
from dwdaemon.store.store import Store
from dwdaemon.threads import ThreadPools
from dwdaemon.web import rest
from dwdaemon.web.context import Context
from dwdaemon.web.routing import install_error_handlers

#: DICOMweb route modules, installed when ``DicomWeb.Enable`` (each has ``install(app, ctx)``).
DICOMWEB_MODULES = (
    "dwdaemon.web.stow",
    "dwdaemon.web.qido",
    "dwdaemon.web.wado_rs",
    "dwdaemon.web.servers",
)
#: Installed when ``DicomWeb.EnableWado`` too.
WADO_URI_MODULES = ("dwdaemon.web.wado_uri",)
#: Always installed (Orthanc core features).
CORE_MODULES = ("dwdaemon.web.jobs", "dwdaemon.web.tools", "dwdaemon.web.default_encoding",
                "dwdaemon.web.core_images", "dwdaemon.web.metrics",
                "dwdaemon.web.webpage")
#: Installed last: describe the routes of the modules above (OPTIONS, PS3.18 capabilities).
LAST_MODULES = ("dwdaemon.web.capabilities",)


def _install_optional(name: str, app: Klein, ctx: Context) -> None:
    if importlib.util.find_spec(name) is None:
        return
    importlib.import_module(name).install(app, ctx)


def build_app(config: Config, store: Store, pools: ThreadPools, reactor: Any = None
              ) -> tuple[Klein, Context]:
    """The daemon's Klein app and the context its routes share."""
    app = Klein()
    ctx = Context(config=config, store=store, pools=pools, app=app, reactor=reactor)
    install_error_handlers(ctx)
    rest.install(app, ctx)
    for name in CORE_MODULES:
        _install_optional(name, app, ctx)
    if config.dicomweb.enable:
        for name in DICOMWEB_MODULES:
            _install_optional(name, app, ctx)
        if config.dicomweb.enable_wado:
            for name in WADO_URI_MODULES:
                _install_optional(name, app, ctx)
    for name in LAST_MODULES:
        _install_optional(name, app, ctx)
    return app, ctx
