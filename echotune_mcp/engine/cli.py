"""``echotune-mcp models list | pull ID [--from-dir PATH] | verify ID``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import Settings
from .model_manager import ModelManager


def models_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="echotune-mcp models", description="model weights on this machine")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="every model card, and whether its weights are downloaded")
    pull = sub.add_parser("pull", help="download weights from the Hugging Face hub, or copy a local folder")
    pull.add_argument("model")
    pull.add_argument("--from-dir", type=Path, default=None, help="a folder holding the weights (offline install)")
    verify = sub.add_parser("verify", help="check downloaded weights against the hashes taken at pull")
    verify.add_argument("model")
    args = p.parse_args(argv)
    manager = ModelManager(Settings.from_env())
    try:
        if args.cmd == "list":
            print(f"{'MODEL':<18}{'BACKEND':<17}{'LICENCE':<14}{'PARAMS':>8}  {'MEMORY':>8}  DOWNLOADED")
            for r in manager.rows():
                print(f"{r['id']:<18}{r['backend']:<17}{r['license']:<14}{r['parameters'] / 1e6:>7.0f}M"
                      f"  {r['memory_mb']:>6} MB  {'yes @ ' + str(r['revision']) if r['downloaded'] else 'no'}")
            return 0
        if args.cmd == "pull":
            manager.pull(args.model, from_dir=args.from_dir)
            return 0
        problems = manager.verify(args.model)
        for problem in problems:
            print(f"{args.model}: {problem}", file=sys.stderr)
        if not problems:
            print(f"{args.model}: ok ({len(manager.manifest(args.model)['files'])} files match)")
        return 1 if problems else 0
    except (ValueError, FileNotFoundError, LookupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def engine_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="echotune-mcp engine", description="the shared local inference engine")
    sub = p.add_subparsers(dest="cmd", required=True)
    serve = sub.add_parser("serve", help="run the engine as a loopback HTTP daemon (set ECHOTUNE_ENGINE_URL to use it)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8771)
    args = p.parse_args(argv)
    from .daemon import serve as run

    run(Settings.from_env(), host=args.host, port=args.port)
    return 0
