"""Byte locations of the frames of Pixel Data, computed once at ingest.

Native pixel data: frame ``i`` is ``length`` bytes at ``offset + i * length``.  Encapsulated pixel
data: each frame is a list of fragments ``(offset, length)`` in the file.  A frame layout that
cannot be resolved is marked ``unresolved`` (served by decoding instead of slicing).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, BinaryIO

#: Photometric interpretations whose native frames hold two samples per pixel on average.
SUBSAMPLED_422 = frozenset({"YBR_FULL_422", "YBR_PARTIAL_422"})
ITEM = 0xFFFEE000
SEQ_DELIMITER = 0xFFFEE0DD


@dataclass
class FrameLayout:
    """How to find each frame's bytes in the stored file."""

    kind: str  # "native", "encapsulated", "unresolved" or "none"
    count: int = 0
    offset: int = 0  # native: start of pixel data
    frame_length: int = 0  # native: bytes per frame
    little_endian: bool = True
    fragments: list[list[tuple[int, int]]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "count": self.count,
            "offset": self.offset,
            "frame_length": self.frame_length,
            "little_endian": self.little_endian,
            "fragments": [[list(f) for f in frame] for frame in self.fragments],
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> FrameLayout:
        return cls(
            kind=value["kind"],
            count=value["count"],
            offset=value["offset"],
            frame_length=value["frame_length"],
            little_endian=value["little_endian"],
            fragments=[[tuple(f) for f in frame] for frame in value["fragments"]],
        )

    def frame_ranges(self, index: int) -> list[tuple[int, int]]:
        """File ranges ``(offset, length)`` of frame ``index`` (0-based)."""
        if not 0 <= index < self.count:
            raise IndexError(index)
        if self.kind == "native":
            return [(self.offset + index * self.frame_length, self.frame_length)]
        if self.kind == "encapsulated":
            return list(self.fragments[index])
        raise ValueError(f"frame layout is {self.kind}")


def native_layout(offset: int, length: int, rows: int, columns: int, samples: int,
                  bits_allocated: int, frames: int, little_endian: bool = True) -> FrameLayout:
    """Layout of native pixel data; 1-bit data not aligned on bytes is unresolved."""
    bits = rows * columns * samples * bits_allocated
    if bits % 8 or frames < 1:
        return FrameLayout("unresolved", count=max(frames, 0))
    frame_length = bits // 8
    if frame_length * frames > length:
        frames = length // frame_length if frame_length else 0
    return FrameLayout("native", count=frames, offset=offset, frame_length=frame_length,
                       little_endian=little_endian)


def read_fragments(fp: BinaryIO, value_offset: int, little_endian: bool = True
                   ) -> tuple[list[int], list[tuple[int, int]]]:
    """Read the Basic Offset Table and the fragments ``(data offset, length)`` from a file."""
    endian = "<" if little_endian else ">"
    fp.seek(value_offset)
    header = fp.read(8)
    if len(header) < 8:
        raise ValueError("encapsulated pixel data is truncated")
    group, elem, length = struct.unpack(endian + "HHL", header)
    if (group << 16 | elem) != ITEM:
        raise ValueError("encapsulated pixel data does not start with the offset table item")
    if length % 4:
        raise ValueError("basic offset table length is not a multiple of 4")
    bot = list(struct.unpack(f"{endian}{length // 4}L", fp.read(length))) if length else []
    fragments: list[tuple[int, int]] = []
    while True:
        header = fp.read(8)
        if len(header) < 8:
            raise ValueError("encapsulated pixel data has no sequence delimiter")
        group, elem, length = struct.unpack(endian + "HHL", header)
        tag = group << 16 | elem
        if tag == SEQ_DELIMITER:
            break
        if tag != ITEM or length == 0xFFFFFFFF:
            raise ValueError(f"unexpected tag {tag:08X} in encapsulated pixel data")
        start = fp.tell()
        fragments.append((start, length))
        fp.seek(length, 1)
    return bot, fragments


def _starts_frame(fp: BinaryIO, offset: int) -> bool:
    fp.seek(offset)
    head = fp.read(4)
    return head[:2] == b"\xff\xd8" or head == b"\xff\x4f\xff\x51" or head[4:8] == b"jP  "


def encapsulated_layout(fp: BinaryIO, value_offset: int, frames: int,
                        extended_offsets: list[int] | None = None,
                        little_endian: bool = True) -> FrameLayout:
    """Group the fragments of encapsulated pixel data into ``frames`` frames."""
    bot, fragments = read_fragments(fp, value_offset, little_endian)
    if not fragments:
        return FrameLayout("unresolved", count=frames)
    first_item = fragments[0][0] - 8
    groups: list[list[tuple[int, int]]] | None = None
    offsets = extended_offsets or bot
    if frames <= 1:
        groups = [fragments]
    elif offsets and len(offsets) == frames:
        starts = [first_item + o for o in offsets] + [1 << 62]
        groups = [[f for f in fragments if starts[i] <= f[0] - 8 < starts[i + 1]]
                  for i in range(frames)]
    elif len(fragments) == frames:
        groups = [[f] for f in fragments]
    else:
        found: list[list[tuple[int, int]]] = []
        for frag in fragments:
            if not found or _starts_frame(fp, frag[0]):
                found.append([frag])
            else:
                found[-1].append(frag)
        if len(found) == frames:
            groups = found
    if groups is None or any(not g for g in groups):
        return FrameLayout("unresolved", count=frames)
    return FrameLayout("encapsulated", count=frames, fragments=groups,
                       little_endian=little_endian)
