"""Ray Serve application builders, for declarative deployments (KubeRay ``RayService``'s ``serveConfigV2``).

``echotune-mcp engine deploy`` deploys imperatively; a ``RayService`` instead names an ``import_path`` and
``args`` that the cluster itself resolves and keeps deployed. These builders turn those ``args`` into the same
applications ``engine deploy`` makes (``engine/ray_serve.py``), so both routes give one layout
(``echotune-musicgen-<checkpoint>``, ``echotune-demucs-<model>``, ``echotune-clap``) that servers find the same
way. Paths and device come from the replica's own ``ECHOTUNE_*`` environment (the RayService's container env);
sizing from ``args``: ``replicas_min``, ``replicas_max``, ``gpus_per_replica``, ``cpus_per_replica``, ``slots``,
``memory_mb`` (``DeployPlan``'s fields), plus ``checkpoint`` (MusicGen) or ``model`` (Demucs).

    import_path: echotune_mcp.serve_apps:musicgen   args: {checkpoint: musicgen-small, gpus_per_replica: 0.5}
"""

from __future__ import annotations

from typing import Any

PLAN_ARGS = ("replicas_min", "replicas_max", "gpus_per_replica", "cpus_per_replica", "slots", "memory_mb")


def _plan(args: dict[str, Any], **family: Any) -> Any:
    from .engine.ray_serve import DeployPlan

    unknown = sorted(set(args) - set(PLAN_ARGS) - {"checkpoint", "model"})
    if unknown:
        raise ValueError(f"unknown serve_apps args {unknown}; allowed: {', '.join(PLAN_ARGS)}, checkpoint, model")
    return DeployPlan(**family, **{k: args[k] for k in PLAN_ARGS if k in args})


def _one(plan: Any) -> Any:
    from .config import Settings
    from .engine.ray_serve import applications

    [app] = applications(Settings.from_env(), plan).values()
    return app


def musicgen(args: dict[str, Any]) -> Any:
    """One MusicGen checkpoint (``args["checkpoint"]``, e.g. ``musicgen-small``); name the application
    ``echotune-musicgen-<checkpoint>`` in the Serve config."""
    checkpoint = str(args.get("checkpoint") or "")
    if not checkpoint:
        raise ValueError("serve_apps:musicgen needs args.checkpoint (e.g. musicgen-small)")
    return _one(_plan(args, musicgen=[checkpoint]))


def demucs(args: dict[str, Any]) -> Any:
    """One Demucs model (``args["model"]``, default ``htdemucs``); name it ``echotune-demucs-<model>``."""
    return _one(_plan(args, demucs=[str(args.get("model") or "htdemucs")]))


def clap(args: dict[str, Any]) -> Any:
    """CLAP embeddings; name it ``echotune-clap``."""
    return _one(_plan(args, clap=True))
