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
    deploy = sub.add_parser(
        "deploy", help="deploy the engine on a Ray cluster with Ray Serve (servers then set ECHOTUNE_ENGINE_URL=ray:...)",
        description="Start or join a Ray cluster and deploy one Serve application per model family; each replica "
                    "runs echotune's continuous-batching engine. Needs the scale extra: pip install 'echotune-mcp[scale]'.")
    deploy.add_argument("--address", default="local",
                        help="the Ray cluster: local (start a head node on this machine with `ray start --head` if "
                             "none runs), auto, HOST:PORT or ray://HOST:PORT (default: local)")
    deploy.add_argument("--musicgen", nargs="*", default=[], metavar="CKPT",
                        help="MusicGen checkpoints to deploy, one deployment each (e.g. musicgen-small)")
    deploy.add_argument("--demucs", nargs="*", default=None, metavar="MODEL",
                        help="deploy Demucs (default model htdemucs; name others, e.g. htdemucs_6s)")
    deploy.add_argument("--clap", action="store_true", help="deploy CLAP (the recommender's similar_to embeddings)")
    deploy.add_argument("--replicas-min", type=int, default=1)
    deploy.add_argument("--replicas-max", type=int, default=1,
                        help="above --replicas-min: autoscale on queue depth (target 3/4 of the engine's slots)")
    deploy.add_argument("--gpus-per-replica", type=float, default=0.0, help="fractional allowed, e.g. 0.5")
    deploy.add_argument("--cpus-per-replica", type=float, default=1.0)
    deploy.add_argument("--slots", type=int, default=None,
                        help="MusicGen requests decoded together per replica (= Serve's max_ongoing_requests); "
                             "default ECHOTUNE_ENGINE_SLOTS, else 16 on a GPU and 8 on CPU")
    deploy.add_argument("--memory-mb", type=int, default=None,
                        help="model memory budget per replica (default ECHOTUNE_MODEL_MEMORY_MB)")
    deploy.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the replicas to run")
    args = p.parse_args(argv)
    if args.cmd == "deploy":
        return _deploy(args)
    from .daemon import serve as run

    run(Settings.from_env(), host=args.host, port=args.port)
    return 0


def _deploy(args: argparse.Namespace) -> int:
    try:
        from . import ray_serve
    except ImportError as exc:  # pragma: no cover - the scale extra is missing
        print(f"error: {exc}; install the scale extra: pip install 'echotune-mcp[scale]'", file=sys.stderr)
        return 2
    demucs = [] if args.demucs is None else (args.demucs or ["htdemucs"])
    plan = ray_serve.DeployPlan(musicgen=list(args.musicgen), demucs=demucs, clap=args.clap,
                                replicas_min=args.replicas_min, replicas_max=args.replicas_max,
                                gpus_per_replica=args.gpus_per_replica, cpus_per_replica=args.cpus_per_replica,
                                slots=args.slots, memory_mb=args.memory_mb)
    try:
        plan.validate()
        address = _ensure_cluster(args.address)
        status = ray_serve.deploy(Settings.from_env(), plan, address=address, wait_timeout_s=args.timeout)
    except (ValueError, RuntimeError, TimeoutError, ConnectionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for app, state in status.items():
        print(f"{app}: {state.split('.')[-1]}")
    url = "ray:auto" if address == "auto" else address if address.startswith("ray://") else "ray://HOST:10001"
    print(f"servers: set ECHOTUNE_ENGINE_URL={url} (the applications stay deployed after this command; "
          "`serve shutdown` or `ray stop` removes them)")
    return 0


def _ensure_cluster(address: str) -> str:
    """``local``: a head node on this machine (started with ``ray start --head`` when none runs), joined as
    ``auto`` so the deployments outlive this command; any other address is joined as given."""
    import shutil
    import subprocess

    if address != "local":
        return address
    ray_bin = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    probe = subprocess.run([ray_bin, "status"], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        started = subprocess.run([ray_bin, "start", "--head", "--include-dashboard=false", "--disable-usage-stats"],
                                 capture_output=True, text=True, timeout=300)
        if started.returncode != 0:
            raise RuntimeError(f"`ray start --head` failed: {(started.stderr or started.stdout).strip()[-500:]}")
    return "auto"
