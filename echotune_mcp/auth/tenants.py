"""Tenants: what each principal may do beyond its own records, set by the server's operator.

Over stdio (and unauthenticated loopback HTTP) the caller is the local user, who owns the machine: the local
files it may read are ``ECHOTUNE_ALLOWED_ROOTS``. Any other principal (an authenticated HTTP user) reads no
local file at all until an operator grants it roots with ``echotune-mcp principals grant-roots``; its quotas
(concurrent jobs, artifact bytes) are the server's defaults unless the operator overrides them with
``echotune-mcp principals set``. One record per principal (fixed id derived from it) holds all of that; each
change is audited.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from ..artifacts import PathPolicy
from ..errors import EchoError
from ..storage.base import DuplicateKey
from ..storage.records import now
from ..storage.stores import RecordStore
from .audit import audit
from .context import LOCAL, principal_for

if TYPE_CHECKING:
    from ..app import App

NO_ROOTS_HINT = ("no local files for this principal: the server's operator can grant folders with "
                 "`echotune-mcp principals grant-roots PRINCIPAL PATH`; or upload the file with import_audio")
LOCAL_HINT = "set ECHOTUNE_ALLOWED_ROOTS to widen, or use import_audio"
USAGE_PAGE = 500


class PrincipalSettings(BaseModel):
    id: str
    owner: str
    created_at: float = Field(default_factory=now)
    updated_at: float = Field(default_factory=now)
    roots: list[str] = Field(default_factory=list, description="real paths of folders this principal may read")
    max_jobs: int | None = Field(None, description="concurrent jobs; None: ECHOTUNE_MAX_JOBS_PER_CLIENT")
    storage_quota_bytes: int | None = Field(None, description="artifact bytes; None: the server default; 0: none")


class QuotaExceeded(EchoError):
    """A new artifact would take the principal over its storage quota."""


class TenantStore(RecordStore[PrincipalSettings]):
    def __init__(self, app: App):
        super().__init__(app.storage.collection("principal_settings"), PrincipalSettings)

    @staticmethod
    def record_id(owner: str) -> str:
        return "prin_" + hashlib.sha256(owner.encode()).hexdigest()[:32]

    async def of(self, owner: str) -> PrincipalSettings | None:
        return await self.get(owner, self.record_id(owner))

    async def change(self, owner: str, **fields: Any) -> PrincipalSettings:
        """Set ``fields`` on the owner's record (made if absent); compare-and-set, so two operators never lose
        each other's change."""
        for _ in range(20):
            current = await self.of(owner)
            if current is None:
                try:
                    return await self.insert(PrincipalSettings(id=self.record_id(owner), owner=owner, **fields))
                except DuplicateKey:
                    continue
            updated = await self.update(owner, current.id, {**fields, "updated_at": max(now(), current.updated_at
                                                                                           + 1e-6)},
                                        expect={"updated_at": current.updated_at})
            if updated is not None:
                return updated
        raise RuntimeError(f"the settings of {owner} kept changing under us; try again")

    async def all(self, limit: int = 10_000) -> list[PrincipalSettings]:
        """Every principal with settings (a system read for the operator's CLI only)."""
        out: list[PrincipalSettings] = []
        cursor = None
        while len(out) < limit:
            page = await self.coll.find(None, None, limit=min(500, limit - len(out)), cursor=cursor)
            out.extend(PrincipalSettings.model_validate(d) for d in page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
        return out


async def path_policy(app: App, principal: str) -> PathPolicy:
    """The local files ``principal`` may read: the configured roots for the local user, granted roots (none until
    an operator grants some) for anyone else."""
    if principal == LOCAL:
        return PathPolicy(app.settings.allowed_roots, how_to_widen=LOCAL_HINT)
    record = await TenantStore(app).of(principal)
    roots = tuple(Path(r) for r in (record.roots if record else []))
    return PathPolicy(roots, how_to_widen=NO_ROOTS_HINT if not roots else
                      "ask the server's operator to grant more folders, or use import_audio")


async def job_limit(app: App, principal: str) -> int:
    record = await TenantStore(app).of(principal)
    if record is not None and record.max_jobs is not None:
        return record.max_jobs
    return app.settings.max_jobs_per_owner


async def storage_quota(app: App, principal: str) -> int:
    """Artifact bytes ``principal`` may keep; 0 means no quota (the local user's default)."""
    record = await TenantStore(app).of(principal)
    if record is not None and record.storage_quota_bytes is not None:
        return record.storage_quota_bytes
    return 0 if principal == LOCAL else app.settings.storage_quota_bytes


async def storage_usage(app: App, principal: str) -> int:
    """Bytes of the principal's artifacts (each record counts, even if its blob is shared by content)."""
    coll = app.storage.collection("artifacts")
    total, cursor = 0, None
    while True:
        page = await coll.find(principal, None, limit=USAGE_PAGE, cursor=cursor)
        total += sum(int(d.get("size") or 0) for d in page.items)
        cursor = page.next_cursor
        if cursor is None:
            return total


# Counted in the usage, never refused: a signed content-credentials manifest is made as part of storing another
# artifact (which must never be left without it), and an export_my_data zip is the owner's right to their data.
EXEMPT_KINDS = frozenset({"manifest", "export"})


async def check_storage(app: App, owner: str, adding: int, kind: str = "") -> None:
    """Refuse a new artifact of ``adding`` bytes that would take ``owner`` over its quota, naming both numbers.
    Concurrent creates may overshoot by what is in flight: the check is a read, not a reservation."""
    if kind in EXEMPT_KINDS:
        return
    quota = await storage_quota(app, owner)
    if quota <= 0:
        return
    used = await storage_usage(app, owner)
    if used + adding > quota:
        await audit(app, "quota_refused", principal=owner, quota="storage_bytes", limit=quota, used=used,
                    adding=adding)
        raise QuotaExceeded(f"storage quota exceeded: this principal's artifacts use {used} bytes of its "
                            f"{quota}-byte quota and the new one is {adding} bytes; delete artifacts you no longer "
                            "need (delete_artifact) or ask the server's operator to raise the quota")


# -- the operator's CLI: echotune-mcp principals ... ------------------------------------------------------------
def _real_dir(raw: str) -> str:
    path = Path(os.path.realpath(Path(raw).expanduser()))
    if not Path(raw).expanduser().is_absolute():
        raise SystemExit(f"{raw!r} is not an absolute path; give the folder's absolute path")
    if not path.is_dir():
        raise SystemExit(f"{raw!r} is not a folder")
    return str(path)


async def grant_roots(app: App, principal: str, paths: list[str]) -> tuple[PrincipalSettings, list[str]]:
    store = TenantStore(app)
    current = await store.of(principal)
    have = list(current.roots) if current else []
    added = [p for p in dict.fromkeys(_real_dir(p) for p in paths) if p not in have]
    record = await store.change(principal, roots=have + added) if added else (current or await store.change(principal))
    await audit(app, "roots_granted", principal=principal, roots=added, by="operator")
    return record, added


async def revoke_roots(app: App, principal: str, paths: list[str]) -> tuple[PrincipalSettings | None, list[str]]:
    store = TenantStore(app)
    current = await store.of(principal)
    if current is None:
        return None, []
    gone = {os.path.realpath(Path(p).expanduser()) for p in paths} | set(paths)
    removed = [r for r in current.roots if r in gone]
    record = await store.change(principal, roots=[r for r in current.roots if r not in gone]) if removed else current
    await audit(app, "roots_revoked", principal=principal, roots=removed, by="operator")
    return record, removed


def _limit(raw: str | None) -> int | None | str:
    if raw is None:
        return "keep"
    if raw.strip().lower() == "default":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{raw!r} is not a whole number (or 'default')") from None
    if value < 0:
        raise SystemExit(f"{raw!r} is negative; use 0 or more (or 'default')")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="echotune-mcp principals",
                                description="what each principal (an authenticated user) may do on this server")
    p.add_argument("--data-dir", default=None)
    sub = p.add_subparsers(dest="action", required=True)
    g = sub.add_parser("grant-roots", help="let PRINCIPAL read local files under these folders")
    g.add_argument("principal")
    g.add_argument("paths", nargs="+")
    r = sub.add_parser("revoke-roots", help="take folders back from PRINCIPAL")
    r.add_argument("principal")
    r.add_argument("paths", nargs="+")
    s = sub.add_parser("set", help="override PRINCIPAL's quotas ('default' goes back to the server's)")
    s.add_argument("principal")
    s.add_argument("--max-jobs", default=None, help="concurrent jobs (1 or more, or 'default')")
    s.add_argument("--storage-quota-bytes", default=None, help="artifact bytes (0: no quota, or 'default')")
    sub.add_parser("list", help="every principal with granted roots or overrides")
    i = sub.add_parser("id", help="the principal of a user: ISSUER (as in ECHOTUNE_AUTH_ISSUER) and SUBJECT (sub)")
    i.add_argument("issuer")
    i.add_argument("subject")
    return p


async def _run(args: argparse.Namespace) -> int:
    from ..app import App
    from ..config import Settings

    if args.action == "id":  # the owner id a token of (iss, sub) maps to; a user also sees it in my_limits
        print(principal_for(args.issuer, args.subject))
        return 0
    settings = Settings.from_env(data_dir=Path(args.data_dir).expanduser() if args.data_dir else None)
    async with App(settings) as app:
        if args.action == "grant-roots":
            record, added = await grant_roots(app, args.principal, args.paths)
            print(f"{args.principal}: granted {', '.join(added) or 'nothing new'}; roots now "
                  f"{', '.join(record.roots) or '(none)'}")
        elif args.action == "revoke-roots":
            rec, removed = await revoke_roots(app, args.principal, args.paths)
            print(f"{args.principal}: revoked {', '.join(removed) or 'nothing (not granted)'}; roots now "
                  f"{', '.join(rec.roots) if rec and rec.roots else '(none)'}")
        elif args.action == "set":
            fields: dict[str, Any] = {}
            for name, raw in (("max_jobs", args.max_jobs), ("storage_quota_bytes", args.storage_quota_bytes)):
                value = _limit(raw)
                if value != "keep":
                    fields[name] = value
            if fields.get("max_jobs") == 0:
                raise SystemExit("--max-jobs 0 would stop every job; use 1 or more, or 'default'")
            if not fields:
                raise SystemExit("nothing to set: give --max-jobs and/or --storage-quota-bytes")
            record = await TenantStore(app).change(args.principal, **fields)
            await audit(app, "principal_settings_changed", principal=args.principal, by="operator", **fields)
            print(f"{args.principal}: max_jobs={record.max_jobs if record.max_jobs is not None else 'default'} "
                  f"storage_quota_bytes="
                  f"{record.storage_quota_bytes if record.storage_quota_bytes is not None else 'default'}")
        else:
            records = await TenantStore(app).all()
            if not records:
                print("no principal has granted roots or overrides")
            for rec in records:
                used = await storage_usage(app, rec.owner)
                print(f"{rec.owner}\troots={','.join(rec.roots) or '-'}\tmax_jobs="
                      f"{rec.max_jobs if rec.max_jobs is not None else 'default'}\tstorage_quota_bytes="
                      f"{rec.storage_quota_bytes if rec.storage_quota_bytes is not None else 'default'}"
                      f"\tstorage_used_bytes={used}")
    return 0


def principals_main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return asyncio.run(_run(args))
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
            return 2
        raise
