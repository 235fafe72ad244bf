"""The embedded backend: SQLite in the data dir (WAL, one connection, calls off the event loop).

Each collection is a table holding the JSON document plus real columns for the fields it is
filtered on, so queries use indexes instead of scanning JSON.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import anyio

from ..private_files import private_dir, private_file, tighten_file
from .base import (
    Backend,
    BlobStore,
    Collection,
    CollectionSpec,
    DuplicateKey,
    Page,
    StorageError,
    Where,
    decode_cursor,
    encode_cursor,
)
from .blobs_fs import FileBlobStore

_BASE_COLUMNS = ("id", "owner", "created_at")


def _ident(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise StorageError(f"bad identifier {name!r}")
    return f'"{name}"'


class SqliteCollection(Collection):
    def __init__(self, backend: SqliteBackend, spec: CollectionSpec):
        self.backend = backend
        self.spec = spec
        self.table = _ident(spec.name)
        self.columns = (*_BASE_COLUMNS, *spec.indexed) + ((spec.ttl_field,) if spec.ttl_field else ())

    # -- schema ---------------------------------------------------------------------------
    def create_sync(self, conn: sqlite3.Connection) -> None:
        extra = "".join(f", {_ident(c)}" for c in self.columns[3:])
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {self.table} "
            f"(id TEXT PRIMARY KEY, owner TEXT NOT NULL, created_at REAL NOT NULL{extra}, doc TEXT NOT NULL)"
        )
        self.migrate_sync(conn)
        name = self.spec.name
        conn.execute(f"CREATE INDEX IF NOT EXISTS {name}_owner_created ON {self.table} (owner, created_at, id)")
        for col in self.spec.indexed:
            conn.execute(
                f"CREATE INDEX IF NOT EXISTS {name}_owner_{col} ON {self.table} (owner, {_ident(col)}, created_at)"
            )
            conn.execute(f"CREATE INDEX IF NOT EXISTS {name}_{col} ON {self.table} ({_ident(col)})")

    def migrate_sync(self, conn: sqlite3.Connection) -> None:
        """Add the columns a newer version filters on to a table an older one created, filled from the JSON."""
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({self.table})")}
        for col in self.columns[3:]:
            if col not in have:
                conn.execute(f"ALTER TABLE {self.table} ADD COLUMN {_ident(col)}")
                conn.execute(f"UPDATE {self.table} SET {_ident(col)} = json_extract(doc, ?)", (f"$.{col}",))

    # -- helpers ----------------------------------------------------------------------------
    def _row_values(self, doc: dict[str, Any]) -> list[Any]:
        values = []
        for col in self.columns:
            v = doc.get(col)
            values.append(v.value if hasattr(v, "value") else v)
        return values

    def _where_sql(self, owner: str | None, where: Where | None, *, ttl: bool = True) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []
        if owner is not None:
            clauses.append("owner = ?")
            args.append(owner)
        for key, want in (where or {}).items():
            if key not in self.columns:
                raise StorageError(f"{self.spec.name} cannot be filtered on {key!r}; indexed fields: {self.columns}")
            if isinstance(want, list | tuple | set | frozenset):
                want = list(want)
                if not want:
                    clauses.append("0")
                    continue
                clauses.append(f"{_ident(key)} IN ({','.join('?' * len(want))})")
                args.extend(w.value if hasattr(w, "value") else w for w in want)
            elif want is None:
                clauses.append(f"{_ident(key)} IS NULL")
            else:
                clauses.append(f"{_ident(key)} = ?")
                args.append(want.value if hasattr(want, "value") else want)
        if self.spec.ttl_field and ttl:
            clauses.append(f"({_ident(self.spec.ttl_field)} IS NULL OR {_ident(self.spec.ttl_field)} > ?)")
            args.append(time.time())
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args

    # -- operations ---------------------------------------------------------------------------
    async def insert(self, doc: dict[str, Any]) -> None:
        cols = ", ".join(_ident(c) for c in self.columns)
        sql = f"INSERT INTO {self.table} ({cols}, doc) VALUES ({','.join('?' * (len(self.columns) + 1))})"
        try:
            await self.backend.run(lambda c: c.execute(sql, [*self._row_values(doc), json.dumps(doc)]))
        except sqlite3.IntegrityError as exc:
            raise DuplicateKey(f"{self.spec.name} {doc.get('id')!r} already exists") from exc

    async def insert_absent(self, docs: Sequence[dict[str, Any]]) -> int:
        if not docs:
            return 0
        cols = ", ".join(_ident(c) for c in self.columns)
        # ON CONFLICT(id) only: any other constraint still fails the whole batch (INSERT OR IGNORE would hide it).
        sql = (f"INSERT INTO {self.table} ({cols}, doc) VALUES ({','.join('?' * (len(self.columns) + 1))}) "
               "ON CONFLICT(id) DO NOTHING")
        rows = [[*self._row_values(d), json.dumps(d)] for d in docs]  # serialised before taking the lock

        def txn(conn: sqlite3.Connection) -> int:
            before = conn.total_changes
            conn.executemany(sql, rows)
            return conn.total_changes - before

        return await self.backend.run(txn)

    async def delete_where(self, owner: str, where: Where) -> int:
        if owner is None:
            raise StorageError("delete_where is owner-scoped; an owner is required")
        clause, args = self._where_sql(owner, where, ttl=False)
        cur = await self.backend.run(lambda c: c.execute(f"DELETE FROM {self.table}{clause}", args))
        return cur.rowcount

    async def get(self, owner: str, id_: str) -> dict[str, Any] | None:
        where, args = self._where_sql(owner, {"id": id_})
        row = await self.backend.run(lambda c: c.execute(f"SELECT doc FROM {self.table}{where}", args).fetchone())
        return json.loads(row[0]) if row else None

    async def update(
        self, owner: str, id_: str, fields: dict[str, Any], *, expect: Where | None = None
    ) -> dict[str, Any] | None:
        where, args = self._where_sql(owner, {"id": id_, **(expect or {})})

        def txn(conn: sqlite3.Connection) -> dict[str, Any] | None:
            row = conn.execute(f"SELECT doc FROM {self.table}{where}", args).fetchone()
            if row is None:
                return None
            doc = {**json.loads(row[0]), **fields}
            sets = ", ".join(f"{_ident(c)} = ?" for c in self.columns[1:])
            conn.execute(
                f"UPDATE {self.table} SET {sets}, doc = ? WHERE id = ?",
                [*self._row_values(doc)[1:], json.dumps(doc), id_],
            )
            return doc

        return await self.backend.run(txn)

    async def update_where(self, where: Where, fields: dict[str, Any]) -> int:
        clause, args = self._where_sql(None, where)

        def txn(conn: sqlite3.Connection) -> int:
            rows = conn.execute(f"SELECT id, doc FROM {self.table}{clause}", args).fetchall()
            sets = ", ".join(f"{_ident(c)} = ?" for c in self.columns[1:])
            for id_, raw in rows:
                doc = {**json.loads(raw), **fields}
                conn.execute(
                    f"UPDATE {self.table} SET {sets}, doc = ? WHERE id = ?",
                    [*self._row_values(doc)[1:], json.dumps(doc), id_],
                )
            return len(rows)

        return await self.backend.run(txn)

    async def delete(self, owner: str, id_: str, *, expect: Where | None = None) -> bool:
        where, args = self._where_sql(owner, {"id": id_, **(expect or {})}, ttl=False)
        cur = await self.backend.run(lambda c: c.execute(f"DELETE FROM {self.table}{where}", args))
        return cur.rowcount > 0

    async def find(
        self, owner: str | None, where: Where | None = None, *, limit: int = 50, cursor: str | None = None
    ) -> Page:
        clause, args = self._where_sql(owner, where)
        if cursor:
            created_at, id_ = decode_cursor(cursor)
            clause += (" AND " if clause else " WHERE ") + "(created_at < ? OR (created_at = ? AND id < ?))"
            args += [created_at, created_at, id_]
        sql = f"SELECT doc FROM {self.table}{clause} ORDER BY created_at DESC, id DESC LIMIT ?"
        rows = await self.backend.run(lambda c: c.execute(sql, [*args, limit + 1]).fetchall())
        docs = [json.loads(r[0]) for r in rows]
        more = len(docs) > limit
        docs = docs[:limit]
        nxt = encode_cursor(docs[-1]["created_at"], docs[-1]["id"]) if more and docs else None
        return Page(items=docs, next_cursor=nxt)

    async def purge_expired(self) -> int:
        if not self.spec.ttl_field:
            return 0
        ttl = _ident(self.spec.ttl_field)
        cur = await self.backend.run(
            lambda c: c.execute(f"DELETE FROM {self.table} WHERE {ttl} IS NOT NULL AND {ttl} <= ?", (time.time(),)))
        return cur.rowcount

    async def count(self, owner: str | None, where: Where | None = None) -> int:
        clause, args = self._where_sql(owner, where)
        row = await self.backend.run(lambda c: c.execute(f"SELECT COUNT(*) FROM {self.table}{clause}", args).fetchone())
        return int(row[0])


class SqliteBackend(Backend):
    name = "sqlite"

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.path = data_dir / "echotune.sqlite3"
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._collections: dict[str, SqliteCollection] = {}
        self._blobs = FileBlobStore(data_dir / "blobs")
        self._limiter: anyio.CapacityLimiter | None = None

    async def open(self, specs: Iterable[CollectionSpec]) -> None:
        # 0700 folder, 0600 database; SQLite gives its -wal and -shm files the database file's mode
        private_dir(self.data_dir)
        private_dir(self.data_dir / "blobs", ours=True)
        private_file(self.path)
        for side in ("-wal", "-shm", "-journal"):
            tighten_file(self.path.with_name(self.path.name + side))
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        # Deleted content is overwritten with zeros, so erased personal data does not linger in free pages (many
        # builds default to this already; some do not).
        conn.execute("PRAGMA secure_delete=ON")
        self._conn = conn
        conn.execute("BEGIN IMMEDIATE")  # one schema change at a time when two processes start together
        try:
            for spec in specs:
                coll = SqliteCollection(self, spec)
                coll.create_sync(conn)
                self._collections[spec.name] = coll
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        # Storage calls get their own thread (they are serialised anyway), so no other work can starve them.
        self._limiter = anyio.CapacityLimiter(1)

    async def run(self, fn: Any) -> Any:
        """Run ``fn(conn)`` in one transaction on a worker thread, serialised by a lock."""
        conn = self._conn
        if conn is None:
            raise StorageError("storage is closed")

        def call() -> Any:
            with self._lock:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    out = fn(conn)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
                return out

        return await anyio.to_thread.run_sync(call, limiter=self._limiter)

    async def scrub(self) -> None:
        """After an erasure: move the write-ahead log into the database and truncate it, so the old page
        images it holds (the erased rows as they were) are gone from disk too."""
        conn = self._conn
        if conn is None:
            raise StorageError("storage is closed")

        def call() -> None:
            with self._lock:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()

        await anyio.to_thread.run_sync(call, limiter=self._limiter)

    def collection(self, name: str) -> Collection:
        return self._collections[name]

    @property
    def blobs(self) -> BlobStore:
        return self._blobs

    async def close(self) -> None:
        if self._conn is not None:
            with self._lock:
                self._conn.close()
            self._conn = None


