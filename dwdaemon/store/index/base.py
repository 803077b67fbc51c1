"""The index interface and its records (back-end independent; methods are blocking, run them
in the database thread pool)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from dwdaemon.dicom.ids import ResourceIds

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


class DuplicateInstance(ValueError):
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
    """What the store needs from an index back-end (SQLite embedded, PostgreSQL shared)."""

    backend_name: str

    def open(self) -> None: ...
    def close(self) -> None: ...
    def add_instance(self, record: InstanceRecord, overwrite: bool) -> AddResult: ...
    def resource(self, level: str, public_id: str) -> dict[str, Any] | None: ...
    def list_ids(self, level: str, limit: int = 0, since: int = 0) -> list[str]: ...
    def instance(self, public_id: str) -> InstanceRow | None: ...
    def instance_by_uid(self, sop_uid: str, study_uid: str | None = None,
                        series_uid: str | None = None) -> InstanceRow | None: ...
    def instances_of(self, level: str, public_id: str) -> list[InstanceRow]: ...
    def instances_by_uids(self, study_uid: str, series_uid: str | None = None
                          ) -> list[InstanceRow]: ...
    def delete(self, level: str, public_id: str) -> list[str] | None: ...
    def file_uuids(self) -> set[str]: ...
    def statistics(self) -> dict[str, int]: ...
    def changes(self, since: int = 0, limit: int = 100, last: bool = False
                ) -> dict[str, Any]: ...
    def main_tags_of_level(self, level: str, exact: dict[str, str] | None = None
                           ) -> list[tuple[str, dict[str, str]]]: ...
    def lookup(self, identifier: str) -> list[dict[str, str]]: ...
    def first_instance_metadata(self, level: str, public_id: str) -> str | None: ...
    def clear_changes(self) -> None: ...
    def get_property(self, name: str) -> str | None: ...
    def set_property(self, name: str, value: str | None) -> None: ...
