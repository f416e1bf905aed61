"""The simulated YubiHSM2's object store.

Owns: the objects by (id, type), the per-(id, type) sequence counters (bumped
when an object is deleted, so a re-created slot reports a new sequence), the
record limit, id allocation, domain visibility, the rollback point the device
takes around each command, and the JSON form of both maps. Every change calls
`on_change` (the device persists its state there). Never touches sessions,
permissions beyond domain visibility, the audit log or I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from kms.sim.yubihsm.defs import MAX_ID, STORAGE_RECORDS, Err
from kms.sim.yubihsm.frames import Refuse
from kms.sim.yubihsm.objects import SimObject

MAX_OBJECTS = STORAGE_RECORDS

Handle = tuple[int, int]
Checkpoint = tuple[dict[Handle, SimObject], dict[Handle, int]]


class ObjectStore:
    def __init__(self, random_bytes: Callable[[int], bytes], on_change: Callable[[], None]) -> None:
        self._random_bytes = random_bytes
        self._on_change = on_change
        self._objects: dict[Handle, SimObject] = {}
        self._sequences: dict[Handle, int] = {}

    # ------------------------------------------------------------------ reading

    def get(self, obj_id: int, obj_type: int) -> SimObject | None:
        return self._objects.get((obj_id, obj_type))

    def visible(self, domains: int, obj_id: int, obj_type: int) -> SimObject:
        """The object, if it shares a domain with `domains`; else OBJECT_NOT_FOUND."""
        obj = self._objects.get((obj_id, obj_type))
        if obj is None or not obj.domains & domains:
            raise Refuse(Err.OBJECT_NOT_FOUND)
        return obj

    def all(self) -> list[SimObject]:
        """Every object, in (id, type) order."""
        return [o for _, o in sorted(self._objects.items())]

    def __contains__(self, handle: Handle) -> bool:
        return handle in self._objects

    def __len__(self) -> int:
        return len(self._objects)

    # ------------------------------------------------------------------ changing

    def new_id(self, requested: int, obj_type: int) -> int:
        """`requested`, or a free random id when it is 0 (as the device picks one)."""
        if requested == 0:
            for _ in range(1000):
                candidate = int.from_bytes(self._random_bytes(2), "big")
                if 1 <= candidate <= MAX_ID and (candidate, obj_type) not in self._objects:
                    return candidate
            raise Refuse(Err.STORAGE_FAILED)
        if requested > MAX_ID:
            raise Refuse(Err.INVALID_ID)
        if (requested, obj_type) in self._objects:
            raise Refuse(Err.OBJECT_EXISTS)
        return requested

    def add(self, obj: SimObject) -> SimObject:
        """Store a new object created by a command (STORAGE_FAILED when the records are used up)."""
        if len(self._objects) >= MAX_OBJECTS:
            raise Refuse(Err.STORAGE_FAILED)
        return self._insert(obj)

    def provision(self, obj: SimObject) -> SimObject:
        """Store `obj` out of band (no record limit); ValueError when (id, type) exists."""
        if obj.handle in self._objects:
            raise ValueError(f"object {obj.handle} already exists")
        return self._insert(obj)

    def _insert(self, obj: SimObject) -> SimObject:
        obj = replace(obj, sequence=self._sequences.get(obj.handle, 0))
        self._objects[obj.handle] = obj
        self._on_change()
        return obj

    def update(self, obj: SimObject) -> None:
        """Replace an existing object's value in place (same (id, type), same sequence)."""
        self._objects[obj.handle] = obj
        self._on_change()

    def remove(self, obj: SimObject) -> None:
        del self._objects[obj.handle]
        self._sequences[obj.handle] = (self._sequences.get(obj.handle, 0) + 1) & 0xFF
        self._on_change()

    def checkpoint(self) -> Checkpoint:
        return dict(self._objects), dict(self._sequences)

    def rollback(self, point: Checkpoint) -> None:
        self._objects, self._sequences = dict(point[0]), dict(point[1])

    def reset(self, objects: list[SimObject]) -> None:
        """Factory state: exactly `objects`, every sequence back to 0 (no `on_change`)."""
        self._objects = {o.handle: o for o in objects}
        self._sequences = {}

    # ------------------------------------------------------------------ JSON form

    def to_json(self) -> dict[str, Any]:
        return {
            "sequences": {f"{i}:{t}": n for (i, t), n in self._sequences.items()},
            "objects": [o.to_json() for o in self.all()],
        }

    def load_json(self, doc: dict[str, Any]) -> None:
        """Take both maps from a state document (raises ValueError/KeyError/TypeError)."""
        sequences: dict[Handle, int] = {}
        for k, v in doc.get("sequences", {}).items():
            obj_id, obj_type = k.split(":")
            sequences[(int(obj_id), int(obj_type))] = int(v)
        objects = [SimObject.from_json(entry) for entry in doc.get("objects", [])]
        self._sequences = sequences
        self._objects = {o.handle: o for o in objects}
