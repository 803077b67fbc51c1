"""Compose the Klein app: core REST API, DICOMweb routes under Root, WADO-URI under WadoRoot.

Every route module has ``install(app, ctx)``; the collaborators they use (store, pools, job
engine, remote servers, metrics, WADO service, limits) are built beforehand by
:func:`dwdaemon.tap.build_site` and reach them through the :class:`Context`.
"""

from __future__ import annotations

from types import ModuleType

from klein import Klein

from dwdaemon.web import (
    capabilities,
    core_images,
    default_encoding,
    jobs,
    metrics,
    qido,
    rest,
    servers,
    stow,
    tools,
    wado_rs,
    wado_uri,
    webpage,
)
from dwdaemon.web.context import Context
from dwdaemon.web.routing import install_error_handlers

#: Always installed (Orthanc core features).
CORE_MODULES: tuple[ModuleType, ...] = (rest, jobs, tools, default_encoding, core_images,
                                        metrics, webpage)
#: Installed when ``DicomWeb.Enable``.
DICOMWEB_MODULES: tuple[ModuleType, ...] = (stow, qido, wado_rs, servers)
#: Installed when ``DicomWeb.EnableWado`` too.
WADO_URI_MODULES: tuple[ModuleType, ...] = (wado_uri,)
#: Installed last: describe the routes of the modules above (OPTIONS, PS3.18 capabilities).
LAST_MODULES: tuple[ModuleType, ...] = (capabilities,)


def install_routes(ctx: Context) -> Klein:
    """Register every route of the configuration on ``ctx.app`` and return it."""
    app, config = ctx.app, ctx.config
    install_error_handlers(ctx)
    modules = list(CORE_MODULES)
    if config.dicomweb.enable:
        modules += DICOMWEB_MODULES
        if config.dicomweb.enable_wado:
            modules += WADO_URI_MODULES
    for module in (*modules, *LAST_MODULES):
        module.install(app, ctx)
    return app
