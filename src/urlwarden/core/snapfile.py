"""Hands large immutable values from one process to another through a file the receiver maps.

Why: a reload builds a million-entry snapshot in a child process (`urlwarden.runtime.offload`) so that
the proxy's event loop never waits for it. Handing the result back with a plain pickle would
make the proxy copy about 100 MB inside one `pickle.loads` call, holding the GIL for some 70 ms:
a request stall of its own. Here every large buffer in the value (``bytes``, ``bytearray``,
``array``, ``memoryview``, ``mmap``) is written out of line at a page boundary, and `load` maps
each one read-only (``mmap``): no copy, no long call, and the pages come in as lookups touch
them. Only the small rest of the value (names, settings, counts) is an ordinary pickle.

What `load` gives back in place of a buffer:

* ``bytes`` / ``bytearray`` / ``mmap``: a read-only ``mmap.mmap`` (slicing gives ``bytes``,
  indexing gives ints, it has ``find`` and the buffer protocol, but no ``==`` on content:
  compare ``memoryview``s of it);
* ``array`` / ``memoryview``: a ``memoryview`` of the mapping cast to the same item format
  (indexing, ``len``, ``bisect``, ``tobytes``, iteration all work as on the array).

The file is private to the two processes (the caller creates it in a 0700 directory and
deletes it once loaded: the mappings outlive the file). It is a pickle: never load one that
another user could have written.

Layout: ``MAGIC``, then ``<QQ`` (pickle length, buffer count), then ``<QQ`` (offset, length)
per buffer, the pickle, and the buffers, each at a multiple of ``mmap.ALLOCATIONGRANULARITY``.
"""

from __future__ import annotations

import io
import mmap
import pickle
import struct
from array import array
from types import MappingProxyType
from typing import Any

__all__ = ["MIN_OUT_OF_LINE", "dump", "load"]

MAGIC = b"UWSNAP1\n"
MIN_OUT_OF_LINE = 1 << 16
"""``bytes`` and ``array`` values at least this large (in bytes) go out of line; smaller ones
are cheaper to copy than to map (memoryviews and mmaps always go out of line: they cannot be
pickled)."""

_COUNTS = struct.Struct("<QQ")
_REGION = struct.Struct("<QQ")
_ALIGN = mmap.ALLOCATIONGRANULARITY


class _Pickler(pickle.Pickler):
    def __init__(self, file) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.buffers: list[memoryview] = []

    def persistent_id(self, obj: Any):
        kind = type(obj)
        if kind is bytes or kind is bytearray:
            if len(obj) < MIN_OUT_OF_LINE:
                return None
            return ("b", self._add(memoryview(obj)))
        if kind is mmap.mmap:
            return ("b", self._add(memoryview(obj)))
        if kind is array:
            if obj.itemsize * len(obj) < MIN_OUT_OF_LINE:
                return None
            return ("v", self._add(memoryview(obj).cast("B")), obj.typecode)
        if kind is memoryview:
            return ("v", self._add(obj.cast("B") if obj.format != "B" else obj), obj.format)
        return None

    def reducer_override(self, obj: Any):
        if type(obj) is MappingProxyType:  # read-only settings (feed options) pickle as a dict
            return _mapping_proxy, (dict(obj),)
        return NotImplemented

    def _add(self, view: memoryview) -> int:
        self.buffers.append(view)
        return len(self.buffers) - 1


def dump(value: Any, path: str) -> None:
    """Write `value` to a new file at `path` (raises OSError, pickle.PicklingError)."""
    skeleton = io.BytesIO()
    pickler = _Pickler(skeleton)
    pickler.dump(value)
    buffers = pickler.buffers
    head = len(MAGIC) + _COUNTS.size + _REGION.size * len(buffers) + skeleton.tell()
    regions, offset = [], _aligned(head)
    for view in buffers:
        regions.append((offset, view.nbytes))
        offset = _aligned(offset + view.nbytes)
    with open(path, "xb") as f:
        f.write(MAGIC + _COUNTS.pack(skeleton.tell(), len(buffers)))
        f.write(b"".join(_REGION.pack(*region) for region in regions))
        f.write(skeleton.getbuffer())
        for view, (start, _) in zip(buffers, regions):
            f.seek(start)
            f.write(view)  # one write per buffer: the GIL is released while the kernel copies
        f.truncate(offset)


def load(path: str) -> Any:
    """The value `dump` wrote to `path`, its buffers mapped read-only (see the module docstring)."""
    with open(path, "rb") as f:
        magic = f.read(len(MAGIC))
        if magic != MAGIC:
            raise ValueError(f"{path}: not a urlwarden snapshot hand-over file")
        skeleton_size, count = _COUNTS.unpack(f.read(_COUNTS.size))
        regions = [_REGION.unpack(f.read(_REGION.size)) for _ in range(count)]
        skeleton = f.read(skeleton_size)
        maps = [
            mmap.mmap(f.fileno(), length, access=mmap.ACCESS_READ, offset=start) if length else b""
            for start, length in regions
        ]

    def persistent_load(pid):
        kind, index, *fmt = pid
        region = maps[index]
        if kind == "b":
            return region
        return memoryview(region).cast(fmt[0])

    unpickler = pickle.Unpickler(io.BytesIO(skeleton))
    unpickler.persistent_load = persistent_load
    return unpickler.load()


def _mapping_proxy(values: dict) -> MappingProxyType:
    return MappingProxyType(values)


def _aligned(offset: int) -> int:
    return -(-offset // _ALIGN) * _ALIGN
