"""The deployment recipe in deploy/ (issue #18 item 4), checked offline.

Docker Compose and a Kubernetes cluster cannot run here, so the files are parsed and checked structurally: against
the JSON schemas in tests/scale/schemas/ (written from the Compose spec, the Kubernetes API reference and KubeRay's
RayService CRD), and for consistency with each other and with the server: the servers' environment is accepted by
``Settings`` (replication with shared keys), names and ports line up (Ray Client port, OTLP endpoint, services,
secrets, volumes, labels), the Serve config validates with Ray's own schema and its builders make the applications
the servers look for.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO, missing

yaml = pytest.importorskip("yaml")
jsonschema = pytest.importorskip("jsonschema")

DEPLOY = REPO / "deploy"
SCHEMAS = Path(__file__).parent / "schemas"
SERVERS = ("echotune-a", "echotune-b")


def _schema(name: str) -> dict:
    return json.loads((SCHEMAS / name).read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())  # resolves the <<: merge keys


@pytest.fixture(scope="module")
def k8s() -> list[dict]:
    return [d for d in yaml.safe_load_all((DEPLOY / "kuberay-rayservice.yaml").read_text()) if d]


def _settings_from(env: dict[str, str], monkeypatch, tmp_path: Path):
    """The Settings a server would build from ``env`` (compose ``${VAR:?...}`` filled in, secrets as files)."""
    from echotune_mcp.config import Settings

    key = tmp_path / "signing.pem"
    key.write_text("placeholder: Settings checks that the shared key file exists, not its contents")
    for name in list(__import__("os").environ):
        if name.startswith("ECHOTUNE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ECHOTUNE_CONFIG", str(tmp_path / "absent.toml"))
    for name, value in env.items():
        value = re.sub(r"\$\{ECHOTUNE_SECRET_KEY:\?[^}]*\}", "a shared passphrase", str(value))
        value = re.sub(r"\$\{ECHOTUNE_AUTH_ISSUER:\?[^}]*\}", "https://auth.example", value)
        if name == "ECHOTUNE_SIGNING_KEY_FILE":
            value = str(key)
        if name.startswith("ECHOTUNE_"):
            monkeypatch.setenv(name, value)
    settings = Settings.from_env(data_dir=tmp_path / "data")
    settings.validate()
    return settings


# -- docker-compose.yml --------------------------------------------------------------------------------------------
def test_compose_file_matches_the_compose_spec_subset(compose):
    jsonschema.validate(compose, _schema("compose.schema.json"))
    assert {"mongo", "ray-head", "ray-gpu-worker", "engine-deploy", *SERVERS, "otel-collector"} <= set(compose["services"])


def test_compose_references_resolve(compose):
    services = compose["services"]
    for name, svc in services.items():
        for dep in (svc.get("depends_on") or {}):
            assert dep in services, f"{name} depends on unknown service {dep}"
        for vol in svc.get("volumes") or []:
            source = vol.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in compose["volumes"], f"{name} mounts undeclared volume {source}"
            else:
                assert (DEPLOY / source).exists(), f"{name} mounts {source}, absent from deploy/"
        for secret in svc.get("secrets") or []:
            assert secret in compose["secrets"]
        build = svc.get("build")
        if build:
            assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()


def test_compose_servers_are_replicas_with_shared_keys(compose, monkeypatch, tmp_path):
    services = compose["services"]
    names = set()
    for name in SERVERS:
        svc = services[name]
        env = svc["environment"]
        assert svc["command"][:4] == ["echotune-mcp", "serve", "--transport", "http"]
        assert env["ECHOTUNE_REPLICATED"] == "on"
        assert env["ECHOTUNE_SECRET_KEY"].startswith("${ECHOTUNE_SECRET_KEY:?"), "compose must refuse an unset key"
        secret = env["ECHOTUNE_SIGNING_KEY_FILE"].removeprefix("/run/secrets/")
        assert secret in svc["secrets"] and secret in compose["secrets"]
        assert "mongo:" in env["ECHOTUNE_MONGODB_URI"] and "replicaSet=rs0" in env["ECHOTUNE_MONGODB_URI"]
        names.add(env["ECHOTUNE_REPLICA_NAME"])
        settings = _settings_from(env, monkeypatch, tmp_path)
        assert settings.replicated and settings.mongodb_uri and settings.secret_key and settings.auth_enabled
        assert any(v.endswith(":/var/lib/echotune") for v in svc["volumes"])
    assert len(names) == len(SERVERS), "each replica needs its own name"
    data = [v for n in SERVERS for v in services[n]["volumes"] if v.endswith(":/var/lib/echotune")]
    assert len(set(data)) == len(SERVERS), "replicas must not share a data dir volume"


def test_compose_mongo_is_a_replica_set_for_change_streams(compose):
    mongo = compose["services"]["mongo"]
    assert "--replSet" in mongo["command"] and "rs0" in mongo["command"]
    assert "rs.initiate" in " ".join(mongo["healthcheck"]["test"])
    for name in SERVERS:
        assert compose["services"][name]["depends_on"]["mongo"]["condition"] == "service_healthy"


def test_compose_ray_and_engine_line_up(compose):
    services = compose["services"]
    head = services["ray-head"]["command"]
    client_port = next(a.split("=")[1] for a in head if a.startswith("--ray-client-server-port="))
    gcs_port = next(a.split("=")[1] for a in head if a.startswith("--port="))
    worker = services["ray-gpu-worker"]
    assert f"--address=ray-head:{gcs_port}" in worker["command"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    deploy = services["engine-deploy"]["command"]
    assert deploy[:3] == ["echotune-mcp", "engine", "deploy"]
    assert deploy[deploy.index("--address") + 1] == f"ray://ray-head:{client_port}"
    tokens = {services[n]["environment"]["RAY_AUTH_TOKEN"] for n in ("ray-head", "ray-gpu-worker", "engine-deploy",
                                                                     *SERVERS)}
    assert len(tokens) == 1 and tokens.pop().startswith("${RAY_AUTH_TOKEN:?"), "one Ray token, shared, required"
    for name in SERVERS:
        assert services[name]["environment"]["ECHOTUNE_ENGINE_URL"] == f"ray://ray-head:{client_port}"
        assert services[name]["depends_on"]["engine-deploy"]["condition"] == "service_completed_successfully"


def test_compose_engine_deploy_arguments_are_ones_the_cli_takes(compose, capsys):
    from echotune_mcp.engine.cli import engine_main

    with pytest.raises(SystemExit):
        engine_main(["deploy", "--help"])
    help_text = capsys.readouterr().out
    deploy = compose["services"]["engine-deploy"]["command"]
    for arg in deploy[3:]:
        if arg.startswith("--"):
            assert arg in help_text, f"`engine deploy` has no {arg}"


def test_compose_telemetry_reaches_the_collector(compose):
    collector = yaml.safe_load((DEPLOY / "otel-collector.yaml").read_text())
    http = collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    for name in SERVERS:
        endpoint = compose["services"][name]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
        assert endpoint == f"http://otel-collector:{http.rsplit(':', 1)[1]}"
    mount = compose["services"]["otel-collector"]["volumes"][0]
    assert mount.startswith("./otel-collector.yaml:") and mount.split(":")[1] in " ".join(
        compose["services"]["otel-collector"]["command"])
    for pipeline in collector["service"]["pipelines"].values():
        for kind in ("receivers", "processors", "exporters"):
            for part in pipeline.get(kind, []):
                assert part in collector[kind], f"pipeline uses undefined {kind[:-1]} {part}"
    for ext in collector["service"].get("extensions", []):
        assert ext in collector["extensions"]


def test_dockerfile_installs_the_engine_and_runs_unprivileged():
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r'pip install [^\n]*"\.\[ml,scale\]"', text)
    assert re.search(r"^USER (?!root)\w+", text, re.M)
    cmd = json.loads(re.search(r"^CMD (.+)$", text, re.M).group(1))
    assert cmd[:4] == ["echotune-mcp", "serve", "--transport", "http"]


# -- kuberay-rayservice.yaml ---------------------------------------------------------------------------------------
def _by_kind(docs: list[dict], kind: str) -> dict:
    [doc] = [d for d in docs if d["kind"] == kind]
    return doc


def test_manifests_match_their_schemas(k8s):
    assert sorted(d["kind"] for d in k8s) == ["Deployment", "RayService", "Service"]
    jsonschema.validate(_by_kind(k8s, "RayService"), _schema("rayservice.schema.json"))
    for kind in ("Deployment", "Service"):
        jsonschema.validate(_by_kind(k8s, kind), _schema("deployment.schema.json"))


def test_rayservice_runs_the_pinned_ray_with_gpu_workers(k8s):
    spec = _by_kind(k8s, "RayService")["spec"]["rayClusterConfig"]
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    pin = next(r for r in extras["scale"] if r.startswith("ray"))
    assert pin.endswith(f"=={spec['rayVersion']}"), (pin, spec["rayVersion"])
    gpu = [g for g in spec["workerGroupSpecs"]
           if any("nvidia.com/gpu" in (c.get("resources", {}).get("limits") or {}) for c in g["template"]["spec"]["containers"])]
    assert gpu, "no worker group asks for a GPU"
    head_ports = {p["containerPort"] for c in spec["headGroupSpec"]["template"]["spec"]["containers"] for p in c["ports"]}
    assert 10001 in head_ports  # Ray Client, what the servers connect to
    server = _by_kind(k8s, "Deployment")["spec"]["template"]["spec"]["containers"]
    pods = [spec["headGroupSpec"]["template"], *(g["template"] for g in spec["workerGroupSpecs"])]
    for container in [c for p in pods for c in p["spec"]["containers"]] + server:
        [token] = [e for e in container["env"] if e["name"] == "RAY_AUTH_TOKEN"]
        assert token["valueFrom"]["secretKeyRef"] == {"name": "echotune-secrets", "key": "ray-auth-token"}


def test_rayservice_serve_config_builds_the_applications_servers_look_for(k8s):
    pytest.importorskip("ray.serve", reason="could not import ray.serve")
    from ray.serve.schema import ServeDeploySchema

    from echotune_mcp.engine.ray_serve import demucs_app, musicgen_app

    config = yaml.safe_load(_by_kind(k8s, "RayService")["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(config) if hasattr(ServeDeploySchema, "model_validate") else \
        ServeDeploySchema.parse_obj(config)
    import importlib

    for app in config["applications"]:
        module, attr = app["import_path"].split(":")
        builder = getattr(importlib.import_module(module), attr)
        built = builder(app["args"])
        assert type(built).__name__ == "Application"
        expected = musicgen_app(app["args"]["checkpoint"]) if attr == "musicgen" else demucs_app(app["args"]["model"])
        assert app["name"] == expected, "servers find the deployments by these names"
    prefixes = [a.get("route_prefix") for a in config["applications"]]
    assert len(prefixes) == len(set(prefixes))


def test_serve_app_builders_refuse_unknown_args():
    pytest.importorskip("ray.serve", reason="could not import ray.serve")
    from echotune_mcp import serve_apps

    with pytest.raises(ValueError, match="unknown serve_apps args"):
        serve_apps.demucs({"gpus": 1})
    with pytest.raises(ValueError, match="checkpoint"):
        serve_apps.musicgen({})


def test_server_deployment_is_replicated_on_shared_configuration(k8s, monkeypatch, tmp_path):
    deployment = _by_kind(k8s, "Deployment")
    service = _by_kind(k8s, "Service")
    ray_service = _by_kind(k8s, "RayService")
    spec = deployment["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["replicas"] >= 2
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    [container] = spec["template"]["spec"]["containers"]
    assert container["args"][:4] == ["echotune-mcp", "serve", "--transport", "http"]
    port_names = {p.get("name") for p in container["ports"]}
    assert service["spec"]["ports"][0]["targetPort"] in port_names
    env = {e["name"]: e for e in container["env"]}
    secrets = {e["valueFrom"]["secretKeyRef"]["name"] for e in env.values() if "secretKeyRef" in e.get("valueFrom", {})}
    assert secrets == {"echotune-secrets"}, "every replica reads one shared Secret"
    for name in ("ECHOTUNE_SECRET_KEY", "ECHOTUNE_MONGODB_URI", "ECHOTUNE_AUTH_ISSUER"):
        assert "secretKeyRef" in env[name]["valueFrom"], f"{name} must come from the shared Secret"
    assert env["ECHOTUNE_REPLICA_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    key_dir = str(Path(env["ECHOTUNE_SIGNING_KEY_FILE"]["value"]).parent)
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    assert volumes[mounts[key_dir]]["secret"]["secretName"] == "echotune-secrets"
    assert env["ECHOTUNE_ENGINE_URL"]["value"] == f"ray://{ray_service['metadata']['name']}-head-svc:10001"
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz"
    plain = {n: e.get("value", "") for n, e in env.items()}
    plain.update(ECHOTUNE_SECRET_KEY="shared passphrase", ECHOTUNE_MONGODB_URI="mongodb://mongo:27017",
                 ECHOTUNE_AUTH_ISSUER="https://auth.example", ECHOTUNE_REPLICA_NAME="echotune-mcp-7d9f-abcde")
    settings = _settings_from(plain, monkeypatch, tmp_path)
    assert settings.replicated and settings.replica_name == "echotune-mcp-7d9f-abcde"


def test_readme_walks_through_the_recipe():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Scale out", 1)[1].split("\n## ", 1)[0]
    for needed in ("deploy/docker-compose.yml", "deploy/kuberay-rayservice.yaml", "ECHOTUNE_REPLICATED",
                   "ECHOTUNE_SIGNING_KEY_FILE", "ECHOTUNE_SECRET_KEY", "docs/SCALE.md"):
        assert needed in section, f"README's Scale out section does not mention {needed}"
    assert "docker compose -f deploy/docker-compose.yml up -d" in section
