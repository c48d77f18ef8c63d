"""scripts.stack: the Compose files read as Compose reads them, and the containers they make.

Unit tests of the reader and of the ``podman run`` each service becomes; the runner itself
runs for real in scripts/compose-e2e.sh (`make test-containers`).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from scripts.stack.compose import Project, dependencies, load, merge
from scripts.stack.describe import builds, system
from scripts.stack.errors import ComposeError
from scripts.stack.podman import HealthCheck, health_check, run_argv, seconds

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
LOCAL = REPO / "deploy" / "compose" / "local-infra.yml"
E2E = REPO / "deploy" / "compose" / "e2e.yml"
SIM = {"COMPOSE_PROFILES": "sim"}


def write(tmp_path: Path, name: str, document: object) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(document))
    return path


def test_override_mappings_merge_and_lists_replace() -> None:
    base = {"environment": {"A": "1", "B": "2"}, "command": ["x", "y"], "image": "i:1"}
    override = {"environment": {"B": "3"}, "command": ["z"]}
    assert merge(base, override) == {
        "environment": {"A": "1", "B": "3"},
        "command": ["z"],
        "image": "i:1",
    }


def test_variables_come_from_the_environment_then_the_env_file(tmp_path: Path) -> None:
    compose = write(
        tmp_path,
        "compose.yml",
        {"services": {"a": {"image": "a:1", "environment": {"X": "${X:-d}", "Y": "${Y-none}"}}}},
    )
    (tmp_path / ".env").write_text("X=from-file\nY=from-file\n")
    project = load([compose], environ={"Y": ""})
    assert project.service("a")["environment"] == {"X": "from-file", "Y": ""}


def test_profiles_select_services_and_optional_dependencies_drop(tmp_path: Path) -> None:
    compose = write(
        tmp_path,
        "compose.yml",
        {
            "services": {
                "sim": {"image": "s:1", "profiles": ["sim"]},
                "app": {
                    "image": "a:1",
                    "depends_on": {"sim": {"condition": "service_healthy", "required": False}},
                },
            }
        },
    )
    without = load([compose], environ={})
    assert set(without.services) == {"app"}
    assert dependencies(without, "app") == {}
    with_sim = load([compose], environ=SIM)
    assert dependencies(with_sim, "app") == {"sim": "service_healthy"}
    assert with_sim.order() == ["sim", "app"]
    assert set(load([compose], environ={}, all_profiles=True).services) == {"sim", "app"}


def test_a_required_dependency_that_is_missing_or_a_cycle_is_an_error(tmp_path: Path) -> None:
    missing = Project("p", tmp_path, {"a": {"depends_on": ["b"]}}, frozenset())
    with pytest.raises(ComposeError, match="not selected"):
        missing.order()
    cycle = Project(
        "p", tmp_path, {"a": {"depends_on": ["b"]}, "b": {"depends_on": ["a"]}}, frozenset()
    )
    with pytest.raises(ComposeError, match="cycle"):
        cycle.order()


def test_an_unsupported_key_is_refused_not_ignored(tmp_path: Path) -> None:
    compose = write(tmp_path, "c.yml", {"services": {"a": {"image": "a:1", "env_file": ".x"}}})
    with pytest.raises(ComposeError, match="env_file"):
        load([compose], environ={})


def test_the_project_starts_infrastructure_before_the_services() -> None:
    project = load([COMPOSE, LOCAL], environ=SIM)
    order = project.order()
    for service in ("gateway", "generator", "poller-relay", "media"):
        for infra in ("kafka", "postgres", "minio-init"):
            assert order.index(infra) < order.index(service)
    assert order.index("minio") < order.index("minio-init")
    assert order.index("runway-sim") < order.index("generator")


def test_a_service_becomes_a_hardened_host_network_container() -> None:
    project = load([COMPOSE, LOCAL], environ=SIM, name="t")
    argv = run_argv(project, "media-relay")
    joined = " ".join(argv)
    assert argv[argv.index("--name") + 1] == "t-media-relay"
    assert "--network host" in joined
    assert "--add-host kafka:127.0.0.1" in joined
    assert "--read-only --read-only-tmpfs=false" in joined, "only /tmp may be writable"
    assert "--tmpfs /tmp" in joined
    assert "--cap-drop ALL" in joined
    assert "--security-opt no-new-privileges:true" in joined
    assert "--init" in argv
    assert "--stop-timeout 60" in joined
    assert "--stop-timeout 120" in " ".join(run_argv(project, "media")), "a transfer finishes"
    assert "--ulimit nofile=20000:20000" in joined
    assert "-p" not in argv, "no published ports with host networking"
    assert "-e VIDGEN_ROLE=relay" in joined
    assert "-e KAFKA_ENABLE_IDEMPOTENCE=false" in joined, "tansu"
    assert "-e S3_PUBLIC_ENDPOINT=http://127.0.0.1:9000" in joined
    assert "--pull never" in joined, "the relay's image is built here"
    assert argv[-1] == "vidgen-media:dev"


def test_without_the_override_ports_are_published_and_volumes_named() -> None:
    project = load([COMPOSE], environ=SIM, name="t")
    argv = run_argv(project, "postgres")
    assert "127.0.0.1:15432:5432" in argv
    assert "t_postgres-data:/var/lib/postgresql/data" in argv
    init = run_argv(load([COMPOSE, LOCAL], environ=SIM, name="t"), "minio-init")
    assert init[init.index("--entrypoint") + 1] == '["mkdir", "-p", "/data/vidgen"]'


def test_health_checks_come_from_compose_or_the_image() -> None:
    project = load([COMPOSE], environ=SIM)
    check = health_check(project, "gateway", None)
    assert check is not None
    assert check.argv[:2] == ["python", "-c"]
    assert "127.0.0.1:8000/healthz" in check.argv[2]
    assert check.deadline_s == 60 + 6 * (10 + 5)
    image = {"Test": ["CMD-SHELL", "true"], "Interval": 2e9, "Timeout": 1e9, "Retries": 2}
    bare = Project("p", REPO, {"x": {"image": "x:1"}}, frozenset())
    assert health_check(bare, "x", image) == HealthCheck(["sh", "-c", "true"], 2, 1, 2, 0)
    assert health_check(bare, "x", None) is None


@pytest.mark.parametrize(
    ("text", "expected"), [("10s", 10), ("1m30s", 90), ("500ms", 0.5), (7, 7), (None, 3)]
)
def test_durations(text: str | int | None, expected: float) -> None:
    assert seconds(text, 3) == expected


def test_a_bad_duration_is_an_error() -> None:
    with pytest.raises(ComposeError):
        seconds("10 seconds", 0)


def test_the_images_to_build_are_read_from_compose() -> None:
    found = {b["name"]: b for b in builds(load([COMPOSE], environ={}, all_profiles=True))}
    assert set(found) == {"gateway", "generator", "poller", "media", "notifier", "runway-sim"}
    assert found["gateway"]["target"] == "gateway"
    assert found["generator"]["args"] == "SERVICE=generator"
    assert found["generator"]["package"] == "vidgen-generator"
    assert found["runway-sim"]["package"] == "runway-sim"
    assert found["runway-sim"]["health"] == "/_sim/health"


def test_the_running_system_is_described_for_the_e2e_tests() -> None:
    described = system(load([COMPOSE, LOCAL, E2E], environ=SIM))
    assert described["gateway"] == "http://127.0.0.1:8000"
    assert described["sim"] == "http://127.0.0.1:8100"
    assert described["kafka_bootstrap"] == "127.0.0.1:9092"
    assert described["database_url"].endswith("@127.0.0.1:5432/vidgen")
    assert described["trace_file"] == str(REPO / ".local" / "stack" / "spans.jsonl")
    assert described["ops_ports"]["gateway-relay"] == 8010
    assert len(described["ops_ports"]) == 9
    assert described["ops_ports"]["notifier"] == 8004
    assert described["env"]["VIDGEN_JWT_SECRET"]


def test_describing_needs_host_networking() -> None:
    with pytest.raises(ComposeError, match="host networking"):
        system(load([COMPOSE], environ=SIM))
