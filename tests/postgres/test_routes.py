"""The HTTP routes (QIDO-RS, WADO-RS/URI, STOW-RS, core API) on the PostgreSQL back-end.

The suites written for the default back-end run again, unchanged, against daemons whose index
is a fresh PostgreSQL schema.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import inlineCallbacks

import tests.core.test_orthanc_core as orthanc_core
import tests.core.test_rest as rest
import tests.qido.test_web as qido
import tests.stow.test_stow_web as stow
import tests.wado.test_routes as wado
from tests.postgres.support import new_schema, start_pg_daemon, uri


def on_postgres(module: Any, cls: type) -> type:
    """``cls`` (a test case of ``module``) with every daemon of ``module.start_daemon`` on a
    PostgreSQL schema of its own."""

    def setUp(self: Any) -> Any:
        schema = new_schema(self)

        def start(case: Any, directory: str | None = None, **overrides: Any) -> Any:
            return start_pg_daemon(case, schema, directory or case.mktemp(), **overrides)

        self.patch(module, "start_daemon", start)
        return cls.setUp(self)

    def tearDown(self: Any) -> Any:
        daemon = getattr(self, "daemon", None)
        if daemon is not None:
            self.assertEqual(daemon.store.index.backend_name, "PostgreSQL")
        return cls.tearDown(self)

    return type(cls.__name__, (cls,), {"setUp": setUp, "tearDown": tearDown,
                                       "__module__": __name__})


StudyTests = on_postgres(qido, qido.StudyTests)
SeriesAndInstanceTests = on_postgres(qido, qido.SeriesAndInstanceTests)
ServerLimitTests = on_postgres(qido, qido.ServerLimitTests)
CaseInsensitiveTests = on_postgres(qido, qido.CaseInsensitiveTests)
CharsetTests = on_postgres(qido, qido.CharsetTests)
DicomwebClientTests = on_postgres(qido, qido.DicomwebClientTests)

MetadataTests = on_postgres(wado, wado.MetadataTests)
RetrieveTests = on_postgres(wado, wado.RetrieveTests)
NotFoundTests = on_postgres(wado, wado.NotFoundTests)
FrameTests = on_postgres(wado, wado.FrameTests)
WadoUriTests = on_postgres(wado, wado.WadoUriTests)


class CoreApiTests(on_postgres(rest, rest.CoreApiTests)):  # type: ignore[misc]
    @inlineCallbacks
    def test_system_statistics_plugins(self) -> Any:
        system = yield self.get_json("/system")
        self.assertEqual(system["DatabaseBackend"], "PostgreSQL")
        self.patch(self, "assertEqual", _backend_tolerant(self.assertEqual))
        yield rest.CoreApiTests.test_system_statistics_plugins(self)


def _backend_tolerant(assert_equal: Any) -> Any:
    def check(first: Any, second: Any, msg: Any = None) -> None:
        if (first, second) == ("PostgreSQL", "SQLite"):
            return  # the one answer that differs by back-end (checked above)
        assert_equal(first, second, msg)
    return check


class StowPostgresMixin:
    """STOW-RS suites: the daemon is configured from JSON, ``PostgreSQL.ConnectionUri``."""

    @property
    def config(self) -> dict[str, Any]:
        return {**super().config,  # type: ignore[misc]
                "PostgreSQL": {"EnableIndex": True, "ConnectionUri": uri(self.schema)}}

    def setUp(self) -> None:
        self.schema = new_schema(self)
        super().setUp()  # type: ignore[misc]
        assert self.store.index.backend_name == "PostgreSQL"  # type: ignore[attr-defined]


class StowRequestShapeTests(StowPostgresMixin, stow.RequestShapeTests):
    pass


class StowOverwriteTrueTests(StowPostgresMixin, stow.OverwriteTrueTests):
    pass


FindLookupTests = on_postgres(orthanc_core, orthanc_core.FindLookupTests)
ChangesTests = on_postgres(orthanc_core, orthanc_core.ChangesTests)
DuplicateSopTests = on_postgres(orthanc_core, orthanc_core.DuplicateSopTests)
DuplicateSopOverwriteTests = on_postgres(orthanc_core, orthanc_core.DuplicateSopOverwriteTests)
