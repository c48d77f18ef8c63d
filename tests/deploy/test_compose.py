"""docker-compose.yml: valid Compose, health-gated start-up, and wiring the services accept.

The file is validated against the Compose Specification's JSON schema as vendored by
check-jsonschema (``check_jsonschema/builtin_schemas/vendor/compose-spec.json``); Compose's
variable interpolation is applied the way ``docker compose`` does (scripts.stack.compose, the
same code that runs the file with podman), and each service's resulting environment is fed
to the settings class its process reads. Each service runs as two containers, its workers and
its outbox relay (``<service>-relay``); the notifier emits no events and runs as one
container, reached through the gateway.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from scripts.stack.compose import interpolate
from vidgen_common.devtokens import DEV_JWT_SECRET
from vidgen_common.settings import DEV_S3_SECRET, S3Settings
from vidgen_runway.settings import SIMULATOR_DEV_KEY

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("gateway", "generator", "poller", "media")
RELAYS = tuple(f"{name}-relay" for name in SERVICES)
NOTIFIER = "notifier"
PROCESSES = (*SERVICES, *RELAYS, NOTIFIER)
INFRA = ("kafka", "postgres", "minio")
RUNWAY_CLIENTS = ("generator", "poller")
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 (what a container must listen on)
SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|_KEYS?$|DATABASE_URL|MC_HOST_")


def load_compose() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def compose_errors(document: Mapping[str, Any]) -> list[str]:
    schema_file = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = yaml.safe_load(schema_file.read_text())  # JSON is YAML
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    return sorted(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(document)
    )


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment as a mapping"
    return {k: "" if v is None else str(v) for k, v in env.items()}


def healthcheck_port(service: Mapping[str, Any]) -> int:
    test = " ".join(service["healthcheck"]["test"])
    match = re.search(r"http://127\.0\.0\.1:(\d+)/", test)
    assert match, test
    return int(match.group(1))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    resolved = interpolate(compose, {})
    assert isinstance(resolved, dict)
    return dict(resolved["services"])


def test_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    assert compose_errors(compose) == []


@pytest.mark.parametrize(
    "breakage",
    [
        lambda d: d["services"]["gateway"].update(imagee="typo"),
        lambda d: d["services"]["gateway"]["depends_on"]["kafka"].update(condition="healthy"),
        lambda d: d["services"]["kafka"].update(ports={"19092": "19092"}),
        lambda d: d["services"]["postgres"]["healthcheck"].update(intervall="5s"),
    ],
    ids=["unknown-key", "bad-condition", "ports-as-mapping", "healthcheck-typo"],
)
def test_schema_rejects_a_broken_compose_file(
    compose: dict[str, Any], breakage: Callable[[dict[str, Any]], None]
) -> None:
    broken = copy.deepcopy(compose)
    breakage(broken)
    assert compose_errors(broken), "the schema accepted a broken file"


def test_infrastructure_reports_its_health(services: dict[str, Any]) -> None:
    for name in (*INFRA, "runway-sim", *PROCESSES):
        check = services[name].get("healthcheck", {})
        assert check.get("test"), f"{name} has no healthcheck"
        assert not check.get("disable"), name
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name


def test_start_up_is_gated_on_health(services: dict[str, Any]) -> None:
    for name in PROCESSES:
        depends = services[name]["depends_on"]
        for infra in ("kafka", "postgres"):
            assert depends[infra]["condition"] == "service_healthy", (name, infra)
        assert depends["minio-init"]["condition"] == "service_completed_successfully", name
    assert services["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"
    for name, service in services.items():
        for target, rule in service.get("depends_on", {}).items():
            assert target in services, f"{name} depends on unknown {target}"
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no healthcheck"


def test_simulator_is_the_sim_profile_and_optional(services: dict[str, Any]) -> None:
    assert services["runway-sim"]["profiles"] == ["sim"]
    for name, service in services.items():
        rule = service.get("depends_on", {}).get("runway-sim")
        if rule is not None:
            assert name in RUNWAY_CLIENTS, f"{name} should not need the simulator"
            assert rule == {"condition": "service_healthy", "required": False}
    assert all("profiles" not in services[name] for name in (*INFRA, *PROCESSES))
    example = (REPO / ".env.example").read_text()
    assert re.search(r"^COMPOSE_PROFILES=sim$", example, re.MULTILINE)


def test_kafka_runs_kraft_reachable_from_containers_and_host(services: dict[str, Any]) -> None:
    kafka = environment(services["kafka"])
    assert set(kafka["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert not any("ZOOKEEPER" in key for key in kafka)
    advertised = dict(
        reversed(item.split("://", 1)) for item in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")
    )
    assert "127.0.0.1:19092" in advertised, "the host reaches Kafka at the local default"
    assert "127.0.0.1:19092:19092" in services["kafka"]["ports"]
    for name in (*SERVICES, NOTIFIER):
        env = environment(services[name])
        assert env["KAFKA_BOOTSTRAP_SERVERS"] in advertised, name
        assert env["KAFKA_ENABLE_IDEMPOTENCE"] == "true", f"{name}: real Kafka grants it"


def test_object_store_and_database_wiring(services: dict[str, Any]) -> None:
    minio = environment(services["minio"])
    postgres = environment(services["postgres"])
    init = services["minio-init"]
    for name in (*SERVICES, NOTIFIER):  # the notifier presigns the links in its payloads
        env = environment(services[name])
        assert (env["S3_ACCESS_KEY"], env["S3_SECRET_KEY"]) == (
            minio["MINIO_ROOT_USER"],
            minio["MINIO_ROOT_PASSWORD"],
        )
        assert init["entrypoint"][-1].endswith(f"/{env['S3_BUCKET']}"), "bucket created"
        public = urlsplit(env["S3_PUBLIC_ENDPOINT"])
        assert f"{public.hostname}:{public.port}:9000" in services["minio"]["ports"], (
            "presigned URLs are signed for the address the host reaches MinIO at"
        )
        assert urlsplit(env["S3_ENDPOINT"]).hostname == "minio"
        url = urlsplit(env["DATABASE_URL"])
        assert url.scheme == "postgresql+asyncpg"
        assert (url.username, url.password, url.hostname, url.path) == (
            postgres["POSTGRES_USER"],
            postgres["POSTGRES_PASSWORD"],
            "postgres",
            f"/{postgres['POSTGRES_DB']}",
        )
    mc_host = urlsplit(environment(init)["MC_HOST_vidgen"])
    assert (mc_host.username, mc_host.password) == (
        minio["MINIO_ROOT_USER"],
        minio["MINIO_ROOT_PASSWORD"],
    )


def test_development_secrets_are_obviously_fake(services: dict[str, Any]) -> None:
    known_fakes = {
        DEV_S3_SECRET,
        DEV_JWT_SECRET,
        SIMULATOR_DEV_KEY,
        S3Settings.model_fields["access_key"].default,
    }
    for name, service in services.items():
        for key, value in environment(service).items():
            if SECRET_NAME.search(key):
                assert value in known_fakes or "not-for-production" in value, (name, key)


def test_ports_are_published_on_loopback_only(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port}"


def test_images_are_built_here_or_pinned(services: dict[str, Any]) -> None:
    for name, service in services.items():
        image = service["image"]
        if "build" in service:
            assert service["build"]["context"] == "."
            assert (REPO / service["build"]["dockerfile"]).is_file(), name
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        assert tag, f"{name}: pin {image}"
        assert tag != "latest", f"{name}: pin {image}"


@pytest.mark.parametrize("name", [*PROCESSES, "runway-sim"])
def test_every_variable_is_one_the_process_reads(
    services: dict[str, Any], known_env_names: Callable[[str], set[str]], name: str
) -> None:
    known = known_env_names(name.removesuffix("-relay"))
    unknown = set(environment(services[name])) - known
    assert not unknown, f"{name} does not read {sorted(unknown)}"


@pytest.mark.parametrize("runway", ["simulator", "real"])
@pytest.mark.parametrize("name", [*SERVICES, NOTIFIER])
def test_services_accept_their_environment(
    compose: dict[str, Any],
    settings_from_env: Callable[[str, Mapping[str, str]], Any],
    name: str,
    runway: str,
) -> None:
    """What compose hands each process passes its settings' own safety checks."""
    host_env = (
        {}
        if runway == "simulator"
        else {"RUNWAYML_API_SECRET": "key_real", "RUNWAYML_BASE_URL": ""}
    )
    service = interpolate(compose, host_env)["services"][name]
    settings = settings_from_env(name, environment(service))
    settings.check_safe()
    assert settings.http_host == ALL_INTERFACES
    assert settings.http_port == healthcheck_port(service)
    if name == "gateway":
        assert f"127.0.0.1:{settings.http_port}:{settings.http_port}" in service["ports"]
    if name in RUNWAY_CLIENTS:
        if runway == "simulator":
            assert settings.runway.base_url == "http://runway-sim:8100"
            assert settings.runway.api_key == SIMULATOR_DEV_KEY
        else:
            assert settings.runway.base_url is None, "the SDK's default: Runway's own API"
            assert settings.runway.api_key == "key_real"


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_runs_its_workers_and_its_relay(services: dict[str, Any], name: str) -> None:
    """Same image, same settings, same hardening; only the role and the port differ."""
    worker, relay = services[name], services[f"{name}-relay"]
    assert relay["image"] == worker["image"]
    assert "build" in worker
    assert "build" not in relay, "one build per image"
    assert relay["pull_policy"] == "never", "the image is built here, never pulled"
    worker_env, relay_env = environment(worker), environment(relay)
    assert (worker_env.pop("VIDGEN_ROLE"), relay_env.pop("VIDGEN_ROLE")) == ("worker", "relay")
    assert worker_env.pop("VIDGEN_HTTP_PORT") != relay_env.pop("VIDGEN_HTTP_PORT")
    assert relay_env == worker_env
    for key in ("read_only", "tmpfs", "cap_drop", "security_opt", "init", "restart"):
        assert relay[key] == worker[key], key
    assert "runway-sim" not in relay["depends_on"], "a relay never calls Runway"


def test_every_process_has_its_own_port(services: dict[str, Any]) -> None:
    """So that the file also runs with host networking (deploy/compose/local-infra.yml)."""
    ports = [int(environment(services[name])["VIDGEN_HTTP_PORT"]) for name in PROCESSES]
    assert len(set(ports)) == len(ports), ports
    for name in PROCESSES:
        assert healthcheck_port(services[name]) == int(
            environment(services[name])["VIDGEN_HTTP_PORT"]
        ), name


def test_every_image_is_built_from_the_one_dockerfile(services: dict[str, Any]) -> None:
    """Its SERVICE (or PACKAGE/MODULE) names a workspace member that `python -m` can run."""
    built = {name: s["build"] for name, s in services.items() if "build" in s}
    assert set(built) == {*SERVICES, NOTIFIER, "runway-sim"}
    for name, build in built.items():
        assert build["context"] == "."
        assert build["dockerfile"] == "Dockerfile", name
        args = build["args"]
        module = args.get("MODULE", f"vidgen_{args['SERVICE']}")
        mains = list(REPO.glob(f"*/*/src/{module}/__main__.py"))
        assert len(mains) == 1, f"{name}: no workspace member has {module}/__main__.py"
        pyproject = mains[0].parents[2] / "pyproject.toml"
        package = args.get("PACKAGE", f"vidgen-{args['SERVICE']}")
        assert f'name = "{package}"' in pyproject.read_text(), name
    assert built["gateway"]["target"] == "gateway", "the gateway's image serves web/dist"


def test_the_gateway_forwards_webhooks_to_the_notifier(services: dict[str, Any]) -> None:
    """/api/webhooks* reaches the notifier's port, which checks the gateway's own tokens."""
    gateway, notifier = environment(services["gateway"]), environment(services[NOTIFIER])
    url = urlsplit(gateway["VIDGEN_NOTIFIER_URL"])
    assert (url.scheme, url.hostname, url.path) == ("http", NOTIFIER, "")
    assert url.port == int(notifier["VIDGEN_HTTP_PORT"]) == healthcheck_port(services[NOTIFIER])
    assert notifier["VIDGEN_JWT_SECRET"] == gateway["VIDGEN_JWT_SECRET"]
    assert notifier["VIDGEN_ROLE"] == "worker"
    assert f"{NOTIFIER}-relay" not in services, "the notifier emits no events: no relay"
    assert "runway-sim" not in services[NOTIFIER]["depends_on"]
    assert "ports" not in services[NOTIFIER], "reached through the gateway only"
    for key in ("read_only", "tmpfs", "cap_drop", "security_opt", "init", "restart"):
        assert services[NOTIFIER][key] == services["media"][key], key


def test_the_notifier_admits_no_private_target_outside_the_tests(services: dict[str, Any]) -> None:
    """Only the e2e override (deploy/compose/e2e.yml) admits the host's loopback receivers."""
    for name in (NOTIFIER, "gateway"):
        assert not environment(services[name]).get("VIDGEN_WEBHOOK_ALLOWED_TARGETS"), name
    e2e = yaml.safe_load((REPO / "deploy/compose/e2e.yml").read_text())
    admitted = e2e["services"][NOTIFIER]["environment"]["VIDGEN_WEBHOOK_ALLOWED_TARGETS"]
    assert admitted == "127.0.0.1"
