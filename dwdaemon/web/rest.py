"""The part of Orthanc's core REST API that DICOMweb users and tools rely on."""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.web.iweb import IRequest

import dwdaemon
from dwdaemon.config import Config
from dwdaemon.dicom.ids import LEVELS
from dwdaemon.dicom.orthanc_tags import ContentError, content, tags_full, tags_simplified
from dwdaemon.store.index.base import PARENT_LEVEL
from dwdaemon.store.store import Store
from dwdaemon.threads import ThreadPools
from dwdaemon.web import producers
from dwdaemon.web.errors import ApiError
from dwdaemon.web.query import arg, flag
from dwdaemon.web.responses import json_body
from dwdaemon.web.routing import RouteGroup

API_VERSION = 22  # the Orthanc REST API level whose shapes we follow
#: The version of Orthanc's DICOMweb plugin whose behaviour the built-in DICOMweb part follows
#: (clients such as Orthanc's test suite pick expectations by it: 1.19 is the first to leave
#: an empty FailedSOPSequence out of STOW-RS answers, as PS3.18 does).
PLUGIN_VERSION = "1.19.0"


def _int_arg(request: IRequest, name: str) -> int:
    value = arg(request, name)
    if value is None or value == "":
        return 0
    try:
        number = int(value)
    except ValueError as exc:
        raise ApiError(400, f"parameter {name} must be a non-negative integer") from exc
    if number < 0:
        raise ApiError(400, f"parameter {name} must be a non-negative integer")
    return number


def _level(level: str) -> str:
    if level not in LEVELS:
        raise ApiError(404, f"unknown resource level {level!r}")
    return level


class CoreRest(RouteGroup):
    """The core REST routes: resources, files, tags, content, system, statistics, plugins."""

    def __init__(self, config: Config, store: Store, pools: ThreadPools) -> None:
        super().__init__(config)
        self.store = store
        self.pools = pools
        self.route("/instances", methods=["POST"], handler=self.upload_instance)
        self.route("/<any(patients,studies,series,instances):level>", methods=["GET"],
                   handler=self.list_resources)
        self.route("/<any(patients,studies,series,instances):level>/<public_id>",
                   methods=["GET"], handler=self.get_resource)
        self.route("/<any(patients,studies,series):level>/<public_id>/"
                   "<any(studies,series,instances):child>", methods=["GET"],
                   handler=self.get_children)
        self.route("/<any(patients,studies,series,instances):level>/<public_id>",
                   methods=["DELETE"], handler=self.delete_resource)
        self.route("/instances/<public_id>/file", methods=["GET"], handler=self.instance_file)
        self.route("/instances/<public_id>/tags", methods=["GET"], handler=self.instance_tags)
        self.route("/instances/<public_id>/content", methods=["GET"],
                   endpoint="instance_content_root", handler=self.instance_content)
        self.route("/instances/<public_id>/content/<path:rest>", methods=["GET"],
                   handler=self.instance_content)
        self.route("/system", methods=["GET"], handler=self.system)
        self.route("/statistics", methods=["GET"], handler=self.statistics)
        self.route("/plugins", methods=["GET"], handler=self.plugins)
        self.route("/plugins/<name>", methods=["GET"], handler=self.plugin)

    @inlineCallbacks
    def upload_instance(self, request: IRequest) -> Any:
        body = request.content
        body.seek(0, os.SEEK_END)
        if body.tell() == 0:
            raise ApiError(400, "empty body: POST /instances expects a DICOM file")
        temp, digest = yield self.pools.io(_spool_body, self.store, body)
        result = yield self.store.ingest_path(temp, digest, uids_from_meta=True)
        return json_body(request, result.orthanc_json())

    @inlineCallbacks
    def list_resources(self, request: IRequest, level: str) -> Any:
        ids = yield self.store.list_ids(level, _int_arg(request, "limit"),
                                        _int_arg(request, "since"))
        if flag(request, "expand"):
            expanded = []
            for public_id in ids:
                resource = yield self.store.resource(level, public_id)
                if resource is not None:
                    expanded.append(resource)
            return json_body(request, expanded)
        return json_body(request, ids)

    @inlineCallbacks
    def get_resource(self, request: IRequest, level: str, public_id: str) -> Any:
        resource = yield self.store.resource(level, public_id)
        if resource is None:
            raise ApiError(404, f"unknown {level[:-1] if level != 'series' else level} "
                                f"{public_id}")
        return json_body(request, resource)

    @inlineCallbacks
    def get_children(self, request: IRequest, level: str, public_id: str, child: str) -> Any:
        if LEVELS.index(child) <= LEVELS.index(level):
            raise ApiError(404, f"{child} is not below {level}")
        resource = yield self.store.resource(level, public_id)
        if resource is None:
            raise ApiError(404, f"unknown resource {public_id}")
        ids = yield _descendants(self.store, level, public_id, child)
        out = []
        for child_id in ids:
            got = yield self.store.resource(child, child_id)
            if got is not None:
                out.append(got)
        return json_body(request, out)

    @inlineCallbacks
    def delete_resource(self, request: IRequest, level: str, public_id: str) -> Any:
        resource = yield self.store.resource(_level(level), public_id)
        if resource is None:
            raise ApiError(404, f"unknown resource {public_id}")
        ancestors = []
        parent_key = {"studies": "ParentPatient", "series": "ParentStudy",
                      "instances": "ParentSeries"}
        current_level, current = level, resource
        while current_level in PARENT_LEVEL:
            parent_level = PARENT_LEVEL[current_level]
            parent_id = current[parent_key[current_level]]
            ancestors.append((parent_level, parent_id))
            current = yield self.store.resource(parent_level, parent_id)
            if current is None:
                break
            current_level = parent_level
        deleted = yield self.store.delete(level, public_id)
        if not deleted:
            raise ApiError(404, f"unknown resource {public_id}")
        remaining = None
        for parent_level, parent_id in ancestors:
            still = yield self.store.resource(parent_level, parent_id)
            if still is not None:
                remaining = {"ID": parent_id, "Path": f"/{parent_level}/{parent_id}",
                             "Type": still["Type"]}
                break
        return json_body(request, {"RemainingAncestor": remaining})

    @inlineCallbacks
    def instance_file(self, request: IRequest, public_id: str) -> Any:
        row = yield self.store.instance(public_id)
        if row is None:
            raise ApiError(404, f"unknown instance {public_id}")
        path = self.store.file_path(row.file_uuid)
        request.setHeader("Content-Type", "application/dicom")
        request.setHeader("Content-Disposition", f'attachment; filename="{public_id}.dcm"')
        yield producers.stream(request, [producers.FilePart(path, size=row.file_size)],
                               self.pools.io, sized=True)

    @inlineCallbacks
    def instance_tags(self, request: IRequest, public_id: str) -> Any:
        row = yield self.store.instance(public_id)
        if row is None:
            raise ApiError(404, f"unknown instance {public_id}")
        dataset = json.loads(row.metadata)
        if flag(request, "simplify"):
            return json_body(request, tags_simplified(dataset))
        if flag(request, "short"):
            return json_body(request, tags_simplified(dataset, short=True))
        return json_body(request, tags_full(dataset))

    @inlineCallbacks
    def instance_content(self, request: IRequest, public_id: str, rest: str = "") -> Any:
        row = yield self.store.instance(public_id)
        if row is None:
            raise ApiError(404, f"unknown instance {public_id}")
        segments = [s for s in rest.split("/") if s]
        try:
            kind, value = content(json.loads(row.metadata), segments)
        except ContentError as exc:
            raise ApiError(404, str(exc)) from exc
        if kind == "list":
            return json_body(request, value)
        if kind == "text":
            data = value.encode("utf-8")
        elif kind == "binary":
            data = value
        else:
            data = yield _read_bulk(self.store, self.pools, row, value)
        request.setHeader("Content-Type", "application/octet-stream")
        request.setHeader("Content-Length", str(len(data)))
        return data

    def system(self, request: IRequest) -> bytes:
        config = self.config
        return json_body(request, {
            "Name": config.name,
            "Version": dwdaemon.__version__,
            "ApiVersion": API_VERSION,
            "Product": "dwdaemon",
            "DatabaseBackend": self.store.index.backend_name,
            "DatabaseBackendPlugin": None,
            "StorageAreaPlugin": None,
            "DatabaseVersion": 6,
            "HttpPort": config.http_port,
            "DicomAet": None,
            "DicomPort": None,
            "PluginsEnabled": True,
            "OverwriteInstances": config.overwrite_instances,
            "UserMetadata": {},
        })

    @inlineCallbacks
    def statistics(self, request: IRequest) -> Any:
        stats = yield self.store.statistics()
        size = stats["size"]
        return json_body(request, {
            "CountPatients": stats["patients"],
            "CountStudies": stats["studies"],
            "CountSeries": stats["series"],
            "CountInstances": stats["instances"],
            "TotalDiskSize": str(size),
            "TotalDiskSizeMB": size // (1024 * 1024),
            "TotalUncompressedSize": str(size),
            "TotalUncompressedSizeMB": size // (1024 * 1024),
        })

    def plugins(self, request: IRequest) -> bytes:
        return json_body(request, ["dicom-web"] if self.config.dicomweb.enable else [])

    def plugin(self, request: IRequest, name: str) -> bytes:
        if name != "dicom-web" or not self.config.dicomweb.enable:
            raise ApiError(404, f"unknown plugin {name}")
        return json_body(request, {
            "ID": "dicom-web",
            "Version": PLUGIN_VERSION,
            "Description": "DICOMweb server and client (built into dwdaemon)",
            "ExtendedID": "dwdaemon",
            "Path": "(built-in)",
        })


def _spool_body(store: Any, body: Any) -> tuple[str, tuple[int, str] | None]:
    """Copy a request body into a storage-area temporary file (io thread); returns its path
    and ``(size, md5)``."""
    path, fp = store.new_temp()
    with fp:
        body.seek(0)
        while chunk := body.read(1 << 20):
            fp.write(chunk)
    return path, fp.digest()


@inlineCallbacks
def _descendants(store: Any, level: str, public_id: str, child: str) -> Any:
    ids = [public_id]
    current = level
    key = {"patients": "Studies", "studies": "Series", "series": "Instances"}
    below = {"patients": "studies", "studies": "series", "series": "instances"}
    while current != child:
        next_ids = []
        for one in ids:
            resource = yield store.resource(current, one)
            if resource is not None:
                next_ids += resource[key[current]]
        ids, current = next_ids, below[current]
    return ids


def _read_bulk(store: Store, pools: ThreadPools, row: Any, path: str) -> Any:
    """The bytes of a bulk value, from its recorded location (or by parsing when unknown)."""
    locations = json.loads(row.bulk)
    location = locations.get(path)
    file_path = store.file_path(row.file_uuid)

    def read() -> bytes:
        if location is not None and location[0] >= 0:
            with open(file_path, "rb") as fp:
                fp.seek(location[0])
                return fp.read(location[1])
        from dwdaemon.dicom.bulk import read_bulk_by_parsing

        return read_bulk_by_parsing(file_path, path)

    return pools.io(read)
