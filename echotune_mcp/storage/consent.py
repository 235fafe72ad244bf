"""Opt-ins to server-wide listener segments (``share_taste_for_segments``), one record per principal.

A principal's listening is theirs; ``segment_listeners`` over the server's principals counts only those who
opted in, and only aggregates of them above the k-anonymity floor ever leave their scope. Opting in stores a
record with a fixed per-owner id (so doing it twice is one record, on either backend and across processes);
opting out deletes it. The list of who opted in is read only by the segment computation (a system read).
"""

from __future__ import annotations

import hashlib
from pydantic import BaseModel, Field

from .base import Collection, DuplicateKey
from .records import now
from .stores import RecordStore


class SegmentOptInRecord(BaseModel):
    id: str
    owner: str
    created_at: float = Field(default_factory=now, description="when the owner opted in")


class SegmentOptInStore(RecordStore[SegmentOptInRecord]):
    def __init__(self, collection: Collection):
        super().__init__(collection, SegmentOptInRecord)

    @staticmethod
    def record_id(owner: str) -> str:
        return "segopt_" + hashlib.sha256(owner.encode()).hexdigest()[:32]

    async def status(self, owner: str) -> SegmentOptInRecord | None:
        return await self.get(owner, self.record_id(owner))

    async def opt_in(self, owner: str) -> tuple[SegmentOptInRecord, bool]:
        """The owner's opt-in record, and whether it was created now (False: they had already opted in)."""
        record = SegmentOptInRecord(id=self.record_id(owner), owner=owner)
        try:
            await self.insert(record)
            return record, True
        except DuplicateKey:
            existing = await self.status(owner)
            if existing is None:  # opted out between the insert and the read: try once more
                return await self.opt_in(owner)
            return existing, False

    async def opt_out(self, owner: str) -> bool:
        """Withdraw; whether there was an opt-in to withdraw."""
        return await self.delete(owner, self.record_id(owner))

    async def opted_in_owners(self, limit: int) -> list[str]:
        """Every owner who opted in (a system read, for the segment computation only), at most ``limit``."""
        owners: list[str] = []
        cursor = None
        with self._span("opted_in_owners"):
            while len(owners) < limit:
                page = await self.coll.find(None, None, limit=min(500, limit - len(owners)), cursor=cursor)
                owners.extend(str(d["owner"]) for d in page.items)
                cursor = page.next_cursor
                if cursor is None:
                    break
        return sorted(set(owners))

    async def count_all(self) -> int:
        with self._span("count_all"):
            return await self.coll.count(None)
