"""``echotune-mcp auth``: connect, inspect and disconnect provider accounts from a terminal.

The same flow as the connect_provider tool (PKCE, loopback callback, encrypted token store), for
the local user: print the URL, open a browser where one is available, wait for the callback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import webbrowser

from ..config import Settings
from ..principal import LOCAL


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="echotune-mcp auth", description="connect music provider accounts")
    p.add_argument("action", help="spotify | ytmusic (connect), status, disconnect, or reset (delete every "
                                  "stored provider token, e.g. after ECHOTUNE_SECRET_KEY was lost; needs --yes)")
    p.add_argument("provider", nargs="?", help="for disconnect: spotify or ytmusic")
    p.add_argument("--no-browser", action="store_true", help="only print the URL")
    p.add_argument("--yes", action="store_true", help="confirm reset")
    p.add_argument("--data-dir", default=None)
    return p


async def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..app import App
    from .hub import ProviderHub

    settings = Settings.from_env(data_dir=Path(args.data_dir).expanduser() if args.data_dir else None)
    if args.action == "reset":
        return await _reset(settings, confirmed=args.yes)
    async with App(settings) as app:
        hub = ProviderHub(app)
        try:
            if args.action == "status":
                for st in await hub.status(LOCAL):
                    print(f"{st.provider:8} {'connected' if st.connected else 'not connected':14} "
                          f"{st.source:10} {st.message}")
                return 0
            if args.action == "disconnect":
                if args.provider not in ("spotify", "ytmusic"):
                    print("usage: echotune-mcp auth disconnect spotify|ytmusic", file=sys.stderr)
                    return 2
                revoked, deleted = await hub.disconnect(LOCAL, args.provider)
                print(f"{args.provider}: {'token deleted' if deleted else 'nothing stored'}"
                      f"{', revoked at provider' if revoked else ''}")
                return 0
            if args.action not in ("spotify", "ytmusic"):
                print(f"unknown action {args.action!r}; use spotify, ytmusic, status or disconnect", file=sys.stderr)
                return 2
            res = await hub.connect(LOCAL, args.action, wait_s=0)
            if res.status != "pending":
                print(res.message, file=sys.stderr if res.status in ("failed", "not_configured") else sys.stdout)
                return 0 if res.status == "connected" else 1
            print(f"Open this URL to connect {args.action}:\n\n  {res.authorization_url}\n", flush=True)
            if not args.no_browser:
                webbrowser.open(res.authorization_url or "")
            print(f"Waiting up to {settings.oauth_wait_seconds:.0f} s for the browser to come back...", flush=True)
            res = await hub.wait(LOCAL, args.action)
            print(res.message, file=sys.stdout if res.status == "connected" else sys.stderr)
            return 0 if res.status == "connected" else 1
        finally:
            await hub.aclose()


async def _reset(settings: Settings, *, confirmed: bool) -> int:
    """Delete every stored provider token and the key check, so the server starts with the key it has now.

    The tokens it deletes are the ones the current key cannot open; people reconnect with connect_provider.
    Storage is opened directly: this must work exactly when the key check stops the server.
    """
    from ..storage import open_storage
    from .token_store import reset_tokens

    if not confirmed:
        print("this deletes every stored provider token for every client (they reconnect afterwards) and every "
              "principal's data key, which that key wrapped: listening histories sealed with them can no longer be "
              "read (re-import them); if you can restore the original ECHOTUNE_SECRET_KEY or key file, do that "
              "instead; run `echotune-mcp auth reset --yes` to go ahead", file=sys.stderr)
        return 2
    from ..privacy.keys import PrincipalKeys

    storage = await open_storage(settings)
    try:
        removed = await reset_tokens(storage.collection("tokens"))
        keys = await PrincipalKeys.reset(storage.collection("principal_keys"))
    finally:
        await storage.close()
    print(f"deleted {removed} stored provider token(s) and {keys} principal data key(s); the next start uses "
          "the current key")
    return 0


def auth_main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        return asyncio.run(_run(args))
    except KeyboardInterrupt:
        return 130
