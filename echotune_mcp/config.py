"""Server configuration, read once from ``ECHOTUNE_*`` environment variables and CLI flags.

One frozen object is passed down to every part (storage, jobs, music, engine, providers) so a
test can build a fully isolated server by handing it a ``Settings`` with its own data dir.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import platformdirs

PACKAGE_ROOT = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_ROOT.parent


def _bundled_dir(name: str) -> Path:
    """Top-level ``prompts/`` or ``models/``: in the checkout, or bundled inside the wheel."""
    here = REPO_ROOT / name
    return here if here.is_dir() else PACKAGE_ROOT / f"_{name}"


PROMPTS_DIR = _bundled_dir("prompts")
MODEL_CARDS_DIR = _bundled_dir("models")

ALL_TOOLSETS = ("jobs", "artifacts", "compose", "audio", "licensing", "curation", "listening", "recommend",
                "audience", "privacy", "account", "export")
TRANSPORTS = ("stdio", "http")


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only: ``localhost`` or a loopback address (127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # any other name may resolve to a public interface


def is_ray_url(url: str | None) -> bool:
    """``ECHOTUNE_ENGINE_URL`` naming a Ray cluster (``ray://HOST:PORT`` or ``ray:auto``), not the loopback daemon."""
    return bool(url) and (url.startswith("ray://") or url == "ray:auto")


def ray_address(url: str) -> str:
    """The ``ray.init`` address of a Ray engine URL: ``ray:auto`` joins the cluster on this machine."""
    if url == "ray:auto":
        return "auto"
    if not url.startswith("ray://") or len(url) <= len("ray://"):
        raise ValueError(f"ECHOTUNE_ENGINE_URL {url!r}: a Ray engine is ray://HOST:PORT or ray:auto")
    return url


def config_file_path() -> Path:
    """``ECHOTUNE_CONFIG``, else the per-user config folder's ``config.toml``."""
    explicit = os.environ.get("ECHOTUNE_CONFIG")
    return Path(explicit).expanduser() if explicit else Path(platformdirs.user_config_dir("echotune-mcp")) / "config.toml"


def _file_values() -> dict[str, str]:
    """Keys of the config file are the env names without the prefix, any case: ``spotify_client_id = "..."``.

    Secrets (client ids and secrets) belong here or in the environment, never in tool arguments.
    The file is parsed once per version (path and modification time), not once per variable.
    """
    path = config_file_path()
    try:
        stat = path.stat()
    except OSError:
        return {}
    if not path.is_file():
        return {}
    return dict(_parse_file(str(path), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=4)
def _parse_file(path: str, _mtime_ns: int, _size: int) -> tuple[tuple[str, str], ...]:
    import tomllib

    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:  # a broken file must stop startup, naming the file
        raise ValueError(f"cannot read the config file {path}: {exc}") from exc
    section = data.get("echotune", data)
    return tuple((str(k).upper(), _toml_text(v)) for k, v in section.items() if not isinstance(v, dict))


def _toml_text(value: object) -> str:
    """TOML booleans and lists as the environment would spell them (``true``, ``a,b``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def _env(name: str, default: str | None = None) -> str | None:
    """Environment first, then the config file, then the default."""
    value = os.environ.get(f"ECHOTUNE_{name}")
    if value in (None, ""):
        value = _file_values().get(name)
    return value if value not in (None, "") else default


def _standard_env(name: str) -> str | None:
    """A standard, non-EchoTune variable (``OTEL_*``): environment only, since its own SDK reads it there too."""
    value = os.environ.get(name)
    return value if value not in (None, "") else None


def _otel_settings() -> dict[str, object]:
    endpoint = _standard_env("OTEL_EXPORTER_OTLP_ENDPOINT") or _standard_env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if (_standard_env("OTEL_SDK_DISABLED") or "").strip().lower() == "true":
        endpoint = None
    return {"otel_endpoint": endpoint, "otel_service_name": _standard_env("OTEL_SERVICE_NAME") or "echotune-mcp"}


def _env_float(name: str, default: float) -> float:
    raw = _env(name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError as exc:  # a typo in the environment must fail loudly, not silently fall back
        raise ValueError(f"ECHOTUNE_{name} must be a number, got {raw!r}") from exc


def _env_int(name: str, default: int) -> int:
    value = _env_float(name, default)
    if not math.isfinite(value) or value != int(value):
        raise ValueError(f"ECHOTUNE_{name} must be a whole number, got {_env(name)!r}")
    return int(value)


def _env_bool(name: str, default: bool) -> bool:
    raw = _env(name)
    if raw is None:
        return default
    word = raw.strip().lower()
    if word in {"1", "true", "yes", "on"}:
        return True
    if word in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"ECHOTUNE_{name} must be on/off (1/0, true/false, yes/no), got {raw!r}")


def _env_list(name: str) -> tuple[str, ...]:
    raw = _env(name)
    return tuple(p for p in (raw or "").split(os.pathsep if os.pathsep in (raw or "") else ",") if p)


def _clap_model(raw: str | None) -> str:
    """ECHOTUNE_CLAP_MODEL: a folder name under the models dir (a model id), never a path out of it."""
    name = (raw or "clap-htsat-unfused").strip()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", name) or ".." in name:
        raise ValueError(f"ECHOTUNE_CLAP_MODEL must be a model folder name such as clap-htsat-unfused, got {raw!r}")
    return name


def _provider_settings() -> dict[str, object]:
    """The music-provider fields of ``Settings`` from ``ECHOTUNE_SPOTIFY_*``, ``ECHOTUNE_YTMUSIC_*`` and friends."""
    yt_file = _env("YTMUSIC_AUTH_FILE")
    return {
        "spotify_client_id": _env("SPOTIFY_CLIENT_ID"),
        "spotify_client_secret": _env("SPOTIFY_CLIENT_SECRET"),
        "spotify_api_base": (_env("SPOTIFY_API_BASE") or "https://api.spotify.com/v1").rstrip("/"),
        "spotify_auth_base": (_env("SPOTIFY_AUTH_BASE") or "https://accounts.spotify.com").rstrip("/"),
        "spotify_token": _env("SPOTIFY_TOKEN"),
        "oauth_redirect_port": _env_int("OAUTH_REDIRECT_PORT", 8765),
        "oauth_wait_seconds": _env_float("OAUTH_WAIT_SECONDS", 120.0),
        "ytmusic_auth_file": Path(yt_file).expanduser() if yt_file else None,
        "ytmusic_client_id": _env("YTMUSIC_CLIENT_ID"),
        "ytmusic_client_secret": _env("YTMUSIC_CLIENT_SECRET"),
        "ytmusic_api_base": (_env("YTMUSIC_API_BASE") or "").rstrip("/") or None,
        "rate_limit_cap_s": _env_float("RATE_LIMIT_CAP_S", 30.0),
        "provider_deadline_s": _env_float("PROVIDER_DEADLINE_S", 60.0),
    }


def _tenant_settings() -> dict[str, object]:
    """Limits per principal (``auth/limits.py``) and the audit log's retention (``auth/audit.py``)."""
    return {
        "rate_per_minute": _env_float("RATE_PER_MINUTE", 120.0),
        "rate_burst": _env_float("RATE_BURST", 60.0),
        "rate_limit_local": _env_bool("RATE_LIMIT_LOCAL", False),
        "rate_costs": _rate_costs(_env("RATE_COSTS")),
        "storage_quota_bytes": _env_int("STORAGE_QUOTA_BYTES", 5 * 1024**3),
        "audit_ttl_days": _env_float("AUDIT_TTL_DAYS", 90.0),
        "auth_fail_delay_max_s": _env_float("AUTH_FAIL_DELAY_MAX_S", 10.0),
    }


RATE_COST_DEFAULTS = (("read", 1.0), ("write", 2.0), ("provider", 3.0), ("job", 5.0), ("generate", 20.0))


def _rate_costs(raw: str | None) -> tuple[tuple[str, float], ...]:
    """ECHOTUNE_RATE_COSTS: ``class=cost`` pairs (``generate=30,read=0.5``) over the defaults."""
    costs = dict(RATE_COST_DEFAULTS)
    for part in (raw or "").split(","):
        if not part.strip():
            continue
        name, _, value = part.partition("=")
        name = name.strip()
        try:
            cost = float(value)
        except ValueError:
            cost = -1.0
        if name not in costs or not (math.isfinite(cost) and cost >= 0):
            raise ValueError(f"ECHOTUNE_RATE_COSTS has {part.strip()!r}; use class=cost pairs with classes "
                             f"{', '.join(costs)} and costs of 0 or more")
        costs[name] = cost
    return tuple(costs.items())


def _auth_settings() -> dict[str, object]:
    """The OAuth resource-server fields of ``Settings`` (``auth/verifier.py``): set ``ECHOTUNE_AUTH_ISSUER`` to turn
    authorization on for the HTTP transport."""
    return {
        "auth_issuer": _env("AUTH_ISSUER"),
        "auth_audience": _env("AUTH_AUDIENCE"),
        "auth_introspection_url": _env("AUTH_INTROSPECTION_URL"),
        "auth_client_id": _env("AUTH_CLIENT_ID"),
        "auth_client_secret": _env("AUTH_CLIENT_SECRET"),
        "auth_jwks_cache_s": _env_float("AUTH_JWKS_CACHE_S", 300.0),
        "auth_refetch_interval_s": _env_float("AUTH_REFETCH_INTERVAL_S", 10.0),
    }


def _web_url(value: str) -> bool:
    """An absolute URL we may fetch or name: https, or http to a loopback host (a test or local issuer)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        return False
    if not host or parts.query or parts.fragment:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and is_loopback(host))


@dataclass(frozen=True)
class Settings:
    """Everything that can be configured. Defaults are safe for a single local user."""

    data_dir: Path = field(default_factory=lambda: Path(platformdirs.user_data_dir("echotune-mcp")))
    mongodb_uri: str | None = None
    mongodb_db: str = "echotune"
    toolsets: tuple[str, ...] = ALL_TOOLSETS
    read_only: bool = False
    allowed_roots: tuple[Path, ...] = ()
    max_upload_bytes: int = 50 * 1024 * 1024
    max_audio_seconds: float = 600.0
    max_generation_seconds: float = 300.0
    max_jobs_per_owner: int = 4
    max_wait_seconds: float = 25.0
    # CPU-heavy work (rendering, analysis, waveforms) runs in its own pool of this many threads, apart from the
    # threads storage and provider calls use, so it can never starve them.
    cpu_workers: int = field(default_factory=lambda: max(1, min(4, os.cpu_count() or 1)))
    # Each server process holds a lease on its running jobs, renewed every third of this; another process on the
    # same data (a second client window, `echotune-mcp jobs`, a MongoDB replica) marks them interrupted only once
    # the lease has run out (or, on the same machine, once the holder's process is gone).
    job_lease_seconds: float = 30.0
    # Stateless replicas (docs/SCALE.md): several `serve` processes on one MongoDB. Then every key a replica uses
    # must be shared configuration, never made by the replica: ECHOTUNE_SECRET_KEY (provider tokens, principal
    # keys, confirmations) and ECHOTUNE_SIGNING_KEY_FILE (the content-credentials key), checked at start.
    replicated: bool = False
    replica_name: str | None = None  # how jobs name this replica ("taken over by replica B"); default host:pid
    signing_key_file: Path | None = None  # an Ed25519 PEM shared by all replicas; default: made in the data dir
    # How often a replica looks for changes made by the others (job progress for subscribers) when the database
    # has no change streams (a standalone mongod; replica sets and SecantusDB have them).
    replica_poll_seconds: float = 1.0
    soundfont: Path | None = None
    sample_rate: int = 44100
    secret_key: str | None = None
    # ``echotune-mcp serve``: stdio, or streamable HTTP on a loopback address (there is no HTTP authorization
    # yet, so a non-loopback host is refused at startup, whatever else is set).
    transport: str = "stdio"
    host: str = "127.0.0.1"
    port: int = 8770
    engine_url: str | None = None
    engine_token: str | None = field(default=None, repr=False)  # shared secret of the engine daemon and its clients
    engine_connect_timeout_s: float = 5.0  # RemoteEngine: connecting to the daemon
    engine_read_timeout_s: float = 30.0  # RemoteEngine: longest silence (the daemon heartbeats every 2 s)
    device: str | None = None
    models_dir: Path | None = None
    clap_model: str = "clap-htsat-unfused"  # the CLAP folder under the models dir (similar_to's embeddings)
    # The in-process MusicGen engine.
    engine_slots: int | None = None  # requests decoded together per model; None: 16 on a GPU, 8 on the CPU
    engine_dtype: str | None = None  # float32, bfloat16 or float16; None: the device's choice
    preview_every_s: float = 5.0  # seconds of generated audio between live MusicGen previews (0: none)
    musicgen_latency_s: float = 90.0  # the latency budget model=auto fits its choice to
    model_memory_mb: int = 16000  # loaded models' weights and KV caches stay under this
    # Music providers (issue #7). Client ids and secrets come from here, never from tool arguments.
    spotify_client_id: str | None = None
    spotify_client_secret: str | None = None  # optional: PKCE works for public clients without one
    spotify_api_base: str = "https://api.spotify.com/v1"
    spotify_auth_base: str = "https://accounts.spotify.com"
    spotify_token: str | None = None  # a ready access token (CI, a person): used as is, never refreshed
    oauth_redirect_port: int = 8765  # loopback callback port; must match the app's registered redirect URI
    oauth_wait_seconds: float = 120.0  # how long connect_provider waits for the browser to come back
    ytmusic_auth_file: Path | None = None  # browser-headers JSON or an OAuth token file from `ytmusicapi`
    ytmusic_client_id: str | None = None
    ytmusic_client_secret: str | None = None
    ytmusic_api_base: str | None = None  # another host for https://music.youtube.com (tests, proxies)
    rate_limit_cap_s: float = 30.0  # the longest Retry-After we wait out ourselves before telling the agent
    provider_deadline_s: float = 60.0  # one provider call, its retries and waits included, ends within this
    # segment_listeners: no listener segment smaller than this is reported (k-anonymity floor), nor an artist or
    # tag named for a segment unless at least this many of its members have it; a tool call may raise it only.
    segment_min_size: int = 5
    # OAuth resource server (auth/verifier.py, auth/http.py). With an issuer, HTTP callers need its access tokens
    # and a non-loopback bind is allowed; without one, HTTP stays on loopback as the local user.
    auth_issuer: str | None = None  # the issuer URL exactly as its tokens' ``iss`` (metadata gives ``jwks_uri``)
    auth_audience: str | None = None  # this server's resource URL in tokens' ``aud``; None: the URL it serves
    auth_introspection_url: str | None = None  # RFC 7662 endpoint for opaque (non-JWT) tokens
    auth_client_id: str | None = None  # our client credentials at the introspection endpoint
    auth_client_secret: str | None = field(default=None, repr=False)
    auth_jwks_cache_s: float = 300.0  # the issuer's keys are trusted this long after a fetch, then refetched
    auth_refetch_interval_s: float = 10.0  # at most one key fetch per this (unknown kid, or the issuer was down)
    # Tracing: the standard OTEL_* variables (the exporter itself reads the rest of them).
    otel_endpoint: str | None = None
    otel_service_name: str = "echotune-mcp"
    # Limits per principal (auth/limits.py): a token bucket of ``rate_burst`` units refilled at ``rate_per_minute``
    # (0: no rate limit); a tool call costs its class's units (a generation more than a read).
    rate_per_minute: float = 120.0
    rate_burst: float = 60.0
    rate_limit_local: bool = False  # the local user (stdio, loopback without auth) is limited too only when on
    rate_costs: tuple[tuple[str, float], ...] = RATE_COST_DEFAULTS
    # Bytes of artifacts one principal may keep (0: no quota). The local user (stdio) has none unless an operator
    # sets one with `echotune-mcp principals set`; every other principal has this one unless overridden.
    storage_quota_bytes: int = 5 * 1024**3
    audit_ttl_days: float = 90.0  # audit log entries are dropped this long after they were written
    auth_fail_delay_max_s: float = 10.0  # the longest a client with repeated auth failures is held per request

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Build settings from the environment; keyword overrides (CLI flags) win."""
        data_dir = Path(_env("DATA_DIR") or platformdirs.user_data_dir("echotune-mcp")).expanduser()
        roots = tuple(Path(p).expanduser() for p in _env_list("ALLOWED_ROOTS")) or (Path.cwd(),)
        toolsets = tuple(t.strip() for t in (_env("TOOLSETS") or ",".join(ALL_TOOLSETS)).split(",") if t.strip())
        sf = _env("SOUNDFONT")
        models = _env("MODELS_DIR")
        settings = cls(
            data_dir=data_dir,
            mongodb_uri=_env("MONGODB_URI"),
            mongodb_db=_env("MONGODB_DB", "echotune") or "echotune",
            toolsets=toolsets,
            read_only=_env_bool("READ_ONLY", False),
            allowed_roots=roots,
            max_upload_bytes=_env_int("MAX_UPLOAD_BYTES", 50 * 1024 * 1024),
            max_audio_seconds=_env_float("MAX_AUDIO_SECONDS", 600.0),
            max_generation_seconds=_env_float("MAX_GENERATION_SECONDS", 300.0),
            max_jobs_per_owner=_env_int("MAX_JOBS_PER_CLIENT", 4),
            cpu_workers=_env_int("CPU_WORKERS", max(1, min(4, os.cpu_count() or 1))),
            job_lease_seconds=_env_float("JOB_LEASE_SECONDS", 30.0),
            replicated=_env_bool("REPLICATED", False),
            replica_name=_env("REPLICA_NAME"),
            signing_key_file=Path(_env("SIGNING_KEY_FILE") or "").expanduser() if _env("SIGNING_KEY_FILE") else None,
            replica_poll_seconds=_env_float("REPLICA_POLL_SECONDS", 1.0),
            soundfont=Path(sf).expanduser() if sf else None,
            secret_key=_env("SECRET_KEY"),
            transport=(_env("TRANSPORT") or "stdio").strip().lower(),
            host=(_env("HOST") or "127.0.0.1").strip(),
            port=_env_int("PORT", 8770),
            segment_min_size=_env_int("SEGMENT_MIN_SIZE", 5),
            engine_url=_env("ENGINE_URL"),
            engine_token=_env("ENGINE_TOKEN"),
            engine_connect_timeout_s=_env_float("ENGINE_CONNECT_TIMEOUT_S", 5.0),
            engine_read_timeout_s=_env_float("ENGINE_READ_TIMEOUT_S", 30.0),
            device=_env("DEVICE"),
            models_dir=Path(models).expanduser() if models else None,
            clap_model=_clap_model(_env("CLAP_MODEL")),
            engine_slots=_env_int("ENGINE_SLOTS", 0) if _env("ENGINE_SLOTS") else None,
            engine_dtype=_env("ENGINE_DTYPE"),
            preview_every_s=_env_float("PREVIEW_EVERY_S", 5.0),
            musicgen_latency_s=_env_float("MUSICGEN_LATENCY_S", 90.0),
            model_memory_mb=_env_int("MODEL_MEMORY_MB", 16000),
            **_provider_settings(),
            **_auth_settings(),
            **_otel_settings(),
            **_tenant_settings(),
        )
        clean = {k: v for k, v in overrides.items() if v is not None}
        return replace(settings, **clean) if clean else settings

    def validate(self) -> None:
        unknown = sorted(set(self.toolsets) - set(ALL_TOOLSETS))
        if unknown:
            raise ValueError(f"unknown toolset(s) {unknown}; valid toolsets are {list(ALL_TOOLSETS)}")
        if not (math.isfinite(self.provider_deadline_s) and 1 <= self.provider_deadline_s <= 3600):
            raise ValueError(f"ECHOTUNE_PROVIDER_DEADLINE_S is {self.provider_deadline_s}; use 1 to 3600 seconds")
        if not 2 <= self.segment_min_size <= 1000:
            raise ValueError(f"ECHOTUNE_SEGMENT_MIN_SIZE is {self.segment_min_size}; use 2 to 1000 (the smallest "
                             "listener segment reported; 1 would expose single listeners)")
        if self.transport not in TRANSPORTS:
            raise ValueError(f"ECHOTUNE_TRANSPORT (--transport) is {self.transport!r}; use one of {list(TRANSPORTS)}")
        self._validate_auth()
        for name, value in (("CONNECT", self.engine_connect_timeout_s), ("READ", self.engine_read_timeout_s)):
            if not (math.isfinite(value) and 0 < value <= 3600):  # bounded: a wedged daemon must fail the job
                raise ValueError(f"ECHOTUNE_ENGINE_{name}_TIMEOUT_S is {value}; use more than 0 and at most 3600 "
                                 "seconds (the read timeout above the daemon's 2 s heartbeat)")
        if not 0 < self.port < 65536:
            raise ValueError(f"ECHOTUNE_PORT (--port) is {self.port}; use a TCP port from 1 to 65535")
        if self.engine_slots is not None and not 1 <= self.engine_slots <= 256:
            raise ValueError(f"ECHOTUNE_ENGINE_SLOTS is {self.engine_slots}; use 1 to 256 requests per model")
        if self.engine_dtype not in (None, "float32", "bfloat16", "float16"):
            raise ValueError(f"ECHOTUNE_ENGINE_DTYPE is {self.engine_dtype!r}; use float32, bfloat16 or float16")
        if not (math.isfinite(self.preview_every_s) and self.preview_every_s >= 0):
            raise ValueError(f"ECHOTUNE_PREVIEW_EVERY_S is {self.preview_every_s}; use 0 (no previews) or more seconds")
        if not (math.isfinite(self.musicgen_latency_s) and self.musicgen_latency_s > 0):
            raise ValueError(f"ECHOTUNE_MUSICGEN_LATENCY_S is {self.musicgen_latency_s}; use a positive number of seconds")
        if self.model_memory_mb <= 0:
            raise ValueError(f"ECHOTUNE_MODEL_MEMORY_MB is {self.model_memory_mb}; use a positive number of MB")
        if self.cpu_workers < 1:
            raise ValueError(f"ECHOTUNE_CPU_WORKERS is {self.cpu_workers}; use 1 or more threads")
        if not (math.isfinite(self.max_generation_seconds) and 0 < self.max_generation_seconds <= 3600):
            raise ValueError(f"ECHOTUNE_MAX_GENERATION_SECONDS is {self.max_generation_seconds}; use more than 0 and at "
                             "most 3600 seconds (generate_music's duration_s schema allows at most 3600)")
        if not 0 < self.job_lease_seconds <= 3600:
            raise ValueError(f"ECHOTUNE_JOB_LEASE_SECONDS is {self.job_lease_seconds}; use more than 0 and at most 3600")
        self._validate_replicas()
        if not (math.isfinite(self.rate_per_minute) and self.rate_per_minute >= 0):
            raise ValueError(f"ECHOTUNE_RATE_PER_MINUTE is {self.rate_per_minute}; use 0 (no rate limit) or more")
        if not (math.isfinite(self.rate_burst) and self.rate_burst >= max(dict(self.rate_costs).values(), default=1)):
            raise ValueError(f"ECHOTUNE_RATE_BURST is {self.rate_burst}; use at least the dearest call's cost "
                             f"({max(dict(self.rate_costs).values(), default=1)}), or no call of that class could run")
        if self.storage_quota_bytes < 0:
            raise ValueError(f"ECHOTUNE_STORAGE_QUOTA_BYTES is {self.storage_quota_bytes}; use 0 (no quota) or more")
        if not (math.isfinite(self.audit_ttl_days) and 1 <= self.audit_ttl_days <= 3650):
            raise ValueError(f"ECHOTUNE_AUDIT_TTL_DAYS is {self.audit_ttl_days}; use 1 to 3650 days")
        if not (math.isfinite(self.auth_fail_delay_max_s) and 0 <= self.auth_fail_delay_max_s <= 60):
            raise ValueError(f"ECHOTUNE_AUTH_FAIL_DELAY_MAX_S is {self.auth_fail_delay_max_s}; use 0 to 60 seconds")

    def _validate_replicas(self) -> None:
        """Replicas share one database, so they must share every key: a key a replica made for itself would seal
        what the others cannot open (tokens) or sign what they do not vouch for (content credentials)."""
        if not (math.isfinite(self.replica_poll_seconds) and 0.1 <= self.replica_poll_seconds <= 60):
            raise ValueError(f"ECHOTUNE_REPLICA_POLL_SECONDS is {self.replica_poll_seconds}; use 0.1 to 60 seconds")
        if self.replica_name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,62}", self.replica_name):
            raise ValueError(f"ECHOTUNE_REPLICA_NAME is {self.replica_name!r}; use 1-63 letters, digits, '.', '_', "
                             "':' or '-' (a pod or host name)")
        if not self.replicated:
            return
        missing = []
        if not self.mongodb_uri:
            missing.append("ECHOTUNE_MONGODB_URI (the database all replicas share)")
        if not self.secret_key:
            missing.append("ECHOTUNE_SECRET_KEY (the same passphrase on every replica: it seals provider tokens, "
                           "principal data keys and confirmations)")
        if self.signing_key_file is None:
            missing.append("ECHOTUNE_SIGNING_KEY_FILE (one Ed25519 PEM mounted on every replica, e.g. made with "
                           "`openssl genpkey -algorithm ed25519 -out signing.pem`)")
        elif not self.signing_key_file.is_file():
            missing.append(f"ECHOTUNE_SIGNING_KEY_FILE names {self.signing_key_file}, which is not a readable file "
                           "(a replica never makes its own key)")
        if missing:
            raise ValueError("ECHOTUNE_REPLICATED is on, so this server must use key material shared by every "
                             "replica, never keys it makes for itself; missing: " + "; ".join(missing))

    def _validate_auth(self) -> None:
        for name, value in (("ISSUER", self.auth_issuer), ("AUDIENCE", self.auth_audience),
                            ("INTROSPECTION_URL", self.auth_introspection_url)):
            if value is not None and not _web_url(value):
                raise ValueError(f"ECHOTUNE_AUTH_{name} is {value!r}; use an https:// URL (http:// only to a "
                                 "loopback host), without query or fragment")
        if (self.auth_audience or self.auth_introspection_url) and not self.auth_issuer:
            raise ValueError("ECHOTUNE_AUTH_AUDIENCE / ECHOTUNE_AUTH_INTROSPECTION_URL are set but "
                             "ECHOTUNE_AUTH_ISSUER is not; set the issuer to turn authorization on")
        if bool(self.auth_client_id) != bool(self.auth_client_secret):
            raise ValueError("set both ECHOTUNE_AUTH_CLIENT_ID and ECHOTUNE_AUTH_CLIENT_SECRET (the introspection "
                             "client's credentials) or neither")
        if not (math.isfinite(self.auth_jwks_cache_s) and 1 <= self.auth_jwks_cache_s <= 86400):
            raise ValueError(f"ECHOTUNE_AUTH_JWKS_CACHE_S is {self.auth_jwks_cache_s}; use 1 to 86400 seconds")
        if not (math.isfinite(self.auth_refetch_interval_s) and 0 <= self.auth_refetch_interval_s <= 3600):
            raise ValueError(f"ECHOTUNE_AUTH_REFETCH_INTERVAL_S is {self.auth_refetch_interval_s}; use 0 to 3600 "
                             "seconds")

    @property
    def auth_enabled(self) -> bool:
        """Whether HTTP callers must present access tokens of ``auth_issuer``."""
        return bool(self.auth_issuer)

    @property
    def resource_url(self) -> str:
        """This server's resource URL (RFC 9728 ``resource``, the audience tokens must name)."""
        if self.auth_audience:
            return self.auth_audience
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/mcp"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def weights_dir(self) -> Path:
        return self.models_dir or (self.data_dir / "weights")
