"""The index interface and its records (back-end independent; methods are blocking, run them
in the database thread pool)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from dwdaemon.dicom.ids import ResourceIds

if TYPE_CHECKING:
    from dwdaemon.dicom.matching import Query
    from dwdaemon.store.index.search import SearchResult

LEVEL_TYPES = {"patients": "Patient", "studies": "Study", "series": "Series",
               "instances": "Instance"}
CHILD_LEVEL = {"patients": "studies", "studies": "series", "series": "instances"}
PARENT_LEVEL = {"studies": "patients", "series": "studies", "instances": "series"}


@dataclass
class InstanceKeys:
    """The identifying and typed attributes of an instance (shared by ingest and the index)."""

    ids: ResourceIds
    patient_id: str
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    transfer_syntax: str
    number_of_frames: int
    rows: int | None
    columns: int | None
    instance_number: str | None


@dataclass
class InstanceRecord(InstanceKeys):
    """Everything ingest computed for one instance, ready to be indexed in one transaction."""

    file_uuid: str
    file_size: int
    file_md5: str
    metadata: str
    bulk: str
    frames: str
    patient_tags: dict[str, str]
    study_tags: dict[str, str]
    series_tags: dict[str, str]
    instance_tags: dict[str, str]
    study_columns: dict[str, Any] = field(default_factory=dict)
    series_columns: dict[str, Any] = field(default_factory=dict)


class DuplicateInstanceError(ValueError):
    """Another instance (another patient, study or series) has this SOP Instance UID."""


@dataclass
class AddResult:
    """Outcome of indexing an instance.

    ``status`` is ``Success`` or ``AlreadyStored``; ``obsolete_file`` names a file the caller must
    remove once the transaction is committed (the new one when it was already stored, or the
    replaced one on overwrite).
    """

    status: str
    instance_id: str
    obsolete_file: str | None = None
    overwritten: bool = False


@dataclass
class InstanceRow:
    """An indexed instance, with what WADO and the core API need to answer without parsing."""

    public_id: str
    series_id: str
    study_id: str
    patient_id: str
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    transfer_syntax: str
    number_of_frames: int
    instance_number: str | None
    file_uuid: str
    file_size: int
    file_md5: str
    main_tags: dict[str, str]
    metadata: str
    bulk: str
    frames: str
    received_at: str
    last_update: str


class Index(Protocol):
    """What the store, the web routes, the job engine and the command-line tools need from an
    index back end (SQLite embedded, PostgreSQL shared). Callers use nothing else: the SQL
    primitives of the back ends are for the statement modules of ``store/index/`` only."""

    backend_name: str

    def open(self) -> None:
        """Create the schema if needed (every table: resources, changes, jobs, servers)."""

    def close(self) -> None:
        """Close every connection."""

    # -- instances: writes
    def batch(self) -> AbstractContextManager[None]:
        """Several writes of this thread in one transaction (group commit) when supported."""

    def add_instance(self, record: InstanceRecord, overwrite: bool) -> AddResult: ...
    def delete(self, level: str, public_id: str) -> list[str] | None: ...

    # -- resources: reads
    def resource(self, level: str, public_id: str) -> dict[str, Any] | None: ...
    def list_ids(self, level: str, limit: int = 0, since: int = 0) -> list[str]: ...
    def instance(self, public_id: str) -> InstanceRow | None: ...
    def instance_by_uid(self, sop_uid: str, study_uid: str | None = None,
                        series_uid: str | None = None) -> InstanceRow | None: ...
    def instances_of(self, level: str, public_id: str) -> list[InstanceRow]: ...
    def instances_by_uids(self, study_uid: str, series_uid: str | None = None
                          ) -> list[InstanceRow]: ...
    def instance_ids_with_file(self, file_uuid: str) -> list[str]: ...
    def file_uuids(self) -> set[str]: ...
    def statistics(self) -> dict[str, int]: ...
    def first_instance_metadata(self, level: str, public_id: str) -> str | None: ...

    # -- QIDO-RS and Orthanc's find/lookup
    def search(self, level: str, query: Query, *, base_url: str, study_uid: str | None = None,
               series_uid: str | None = None, max_results: int = 0) -> SearchResult: ...
    def explain(self, level: str, query: Query, **kwargs: Any) -> list[str]: ...
    def main_tags_of_level(self, level: str, exact: dict[str, str] | None = None
                           ) -> list[tuple[str, dict[str, str]]]: ...
    def lookup(self, identifier: str) -> list[dict[str, str]]: ...

    # -- changes and properties
    def changes(self, since: int = 0, limit: int = 100, last: bool = False
                ) -> dict[str, Any]: ...
    def clear_changes(self) -> None: ...
    def get_property(self, name: str) -> str | None: ...
    def set_property(self, name: str, value: str | None) -> None: ...

    # -- jobs repository (rows in ``jobs_sql.COLUMNS`` order)
    def save_job(self, row: tuple[Any, ...]) -> None: ...
    def jobs(self) -> list[tuple[Any, ...]]: ...
    def job(self, job_id: str) -> tuple[Any, ...] | None: ...
    def forget_old_jobs(self, keep: int) -> None: ...

    # -- remote servers repository
    def put_server(self, name: str, definition: str | None) -> None: ...
    def servers(self) -> list[tuple[str, str | None]]: ...
