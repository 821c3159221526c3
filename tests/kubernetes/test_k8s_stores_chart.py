"""Our chart (charts/data-platform-stores) rendered with the real Helm engine, for development
and production values: valid Kubernetes objects, the platform's policies, and the stores
reachable only as the NetworkPolicies say."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import helm_python
import k8s_cache
import pytest
from data_platform_dev.releases import core as pr

STORES = pr.STORES_RELEASE


def stores(env: str) -> tuple[pr.Manifest, ...]:
    return k8s_cache.rendered(env, STORES)


def by_kind_name(objects: tuple[pr.Manifest, ...], kind: str, name: str) -> pr.Manifest:
    for obj in objects:
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    raise AssertionError(f"{kind}/{name} not rendered; have {[pr.describe(o) for o in objects]}")


@pytest.mark.parametrize("version", pr.KUBERNETES_VERSIONS)
@pytest.mark.parametrize("env", pr.ENVIRONMENTS)
def test_every_object_is_valid_kubernetes(env: str, version: str) -> None:
    print(f"rendering engine: {pr.engine_name()}")
    assert pr.schema_errors(stores(env), version) == []


@pytest.mark.parametrize("env", pr.ENVIRONMENTS)
def test_objects_follow_the_platform_policies(env: str) -> None:
    problems = pr.policy_violations(stores(env), allow_generated_secrets=(env == "dev"))
    assert problems == []


@pytest.mark.parametrize("env", pr.ENVIRONMENTS)
def test_pods_of_our_chart_mount_no_service_account_token(env: str) -> None:
    for obj in stores(env):
        template = pr.pod_template(obj)
        if template is not None:
            assert template[1].get("automountServiceAccountToken") is False, pr.describe(obj)


def test_the_policy_checks_catch_what_they_claim() -> None:
    statefulset = by_kind_name(stores("production"), "StatefulSet", "postgres")
    spoiled: dict[str, Any] = pr.deep_merge(statefulset, {})
    container = spoiled["spec"]["template"]["spec"]["containers"][0]
    container["image"] = "docker.io/library/postgres:latest"
    del container["resources"]["limits"]
    del container["readinessProbe"]
    container["securityContext"]["allowPrivilegeEscalation"] = True
    container["env"].append({"name": "POSTGRES_PASSWORD", "value": "hunter2"})
    problems = "\n".join(pr.workload_violations(spoiled))
    for expected in (
        ":latest",
        "no cpu limit",
        "no memory limit",
        "no readinessProbe",
        "allowPrivilegeEscalation",
        "POSTGRES_PASSWORD has an inline value",
    ):
        assert expected in problems


def test_production_renders_no_secret_and_development_generates_all_of_them() -> None:
    assert [o for o in stores("production") if o["kind"] == "Secret"] == []
    values = pr.load_yaml(pr.STORES_CHART_DIR / "values-production.yaml")
    generated = {o["metadata"]["name"]: o for o in stores("dev") if o["kind"] == "Secret"}
    for role, keys in pr.SECRET_KEYS.items():
        secret = generated[values["secrets"][role]["existingSecret"]]
        assert sorted(secret["data"]) == sorted(keys)
        for key in keys:
            assert len(base64.b64decode(secret["data"][key])) >= 32, f"{role}/{key} is weak"


def test_every_postgres_role_has_its_own_generated_password() -> None:
    """Team roles: the instance and each location have their own password, none the owner's."""
    secrets = {o["metadata"]["name"]: o["data"] for o in stores("dev") if o["kind"] == "Secret"}
    passwords = [
        secrets["data-platform-credentials"]["POSTGRES_PASSWORD"],
        secrets["dagster-postgresql-secret"]["postgresql-password"],
        secrets["data-platform-ingestion-credentials"]["POSTGRES_PASSWORD"],
        secrets["data-platform-transformation-credentials"]["POSTGRES_PASSWORD"],
        secrets["data-platform-feature-store-credentials"]["POSTGRES_PASSWORD"],
    ]
    assert len(set(passwords)) == len(passwords)
    assert (
        secrets["data-platform-feature-store-credentials"]["REDIS_PASSWORD"]
        == secrets["data-platform-credentials"]["REDIS_PASSWORD"]
    )


def test_values_schema_refuses_unknown_keys_such_as_a_plaintext_password() -> None:
    with helm_python.Chart.load(pr.STORES_CHART_DIR) as chart:
        with pytest.raises(helm_python.HelmValuesError, match="password"):
            chart.render({"postgres": {"password": "hunter2"}}, name=STORES)
        with pytest.raises(helm_python.HelmValuesError, match="tag"):
            chart.render({"images": {"redis": {"tag": "latest"}}}, name=STORES)


def test_postgres_initialisation_creates_the_three_databases_owned_by_platform() -> None:
    scripts = by_kind_name(stores("production"), "ConfigMap", "postgres-initdb")["data"]
    # the entrypoint runs them in name order: the role before the databases it owns
    assert sorted(scripts) == ["10-roles.sh", "20-databases.sh"]
    assert "ARRAY['dagster', 'warehouse', 'feast_registry']" in scripts["20-databases.sh"]
    assert "CREATE DATABASE %I OWNER %I" in scripts["20-databases.sh"]
    assert "CREATE ROLE %I LOGIN" in scripts["10-roles.sh"]
    statefulset = by_kind_name(stores("production"), "StatefulSet", "postgres")
    mounts = {
        m["mountPath"]
        for m in statefulset["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    }
    assert "/docker-entrypoint-initdb.d" in mounts
    assert (
        statefulset["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
        == "100Gi"
    )


def test_redis_persists_with_aof_and_requires_the_password() -> None:
    config = by_kind_name(stores("production"), "ConfigMap", "redis-config")["data"]["redis.conf"]
    assert "appendonly yes" in config and "include /run/redis/auth.conf" in config
    assert "requirepass" not in config.split("include")[0].replace("# requirepass", "")
    command = " ".join(
        by_kind_name(stores("production"), "StatefulSet", "redis")["spec"]["template"]["spec"][
            "containers"
        ][0]["command"]
    )
    assert "requirepass" in command and "/run/secrets/redis/REDIS_PASSWORD" in command


def test_environment_configmap_carries_the_non_secret_contract() -> None:
    data = by_kind_name(stores("production"), "ConfigMap", "data-platform-env")["data"]
    assert data["POSTGRES_HOST"] == f"postgres.{pr.NAMESPACE}.svc"
    assert data["REDIS_HOST"] == f"redis.{pr.NAMESPACE}.svc"
    assert (data["POSTGRES_PORT"], data["REDIS_PORT"]) == ("5432", "6379")
    assert (data["WAREHOUSE_DB"], data["FEAST_REGISTRY_DB"], data["POSTGRES_USER"]) == (
        "warehouse",
        "feast_registry",
        "platform",
    )
    assert {"JOURNAL_API_URL", "EXPORT_S3_ENDPOINT_URL", "EXPORT_URI"} <= set(data)
    assert data["EXPORT_URI"] == "s3://gold-exports", "the bucket, unless platform.exportUri is set"
    dev = by_kind_name(stores("dev"), "ConfigMap", "data-platform-env")["data"]
    assert dev["EXPORT_URI"] == "/tmp/gold-exports"


def test_helm_test_hook_connects_to_both_stores_with_the_platform_credentials() -> None:
    pod = by_kind_name(stores("dev"), "Pod", f"{STORES}-test-stores")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    commands = {c["name"]: " ".join(c["command"]) for c in pod["spec"]["containers"]}
    assert (
        "psql" in commands["postgres"]
        and "for db in dagster warehouse feast_registry" in commands["postgres"]
    )
    assert "redis-cli" in commands["redis"] and "ping" in commands["redis"]
    peers = pr.ingress_peers(
        stores("dev"),
        by_kind_name(stores("dev"), "StatefulSet", "postgres")["spec"]["template"]["metadata"][
            "labels"
        ],
    )
    assert pr.admitted(peers, pod["metadata"]["labels"])


@pytest.mark.parametrize("env", pr.ENVIRONMENTS)
def test_store_services_are_reachable_only_as_the_network_policies_say(env: str) -> None:
    objects = stores(env)
    clients = {
        "postgres": {"data-platform/postgres-client": "true"},
        "redis": {"data-platform/redis-client": "true"},
    }
    for store, client in clients.items():
        service = by_kind_name(objects, "Service", store)
        assert service["spec"]["type"] == "ClusterIP"
        pod_labels = by_kind_name(objects, "StatefulSet", store)["spec"]["template"]["metadata"][
            "labels"
        ]
        peers = pr.ingress_peers(objects, pod_labels)
        assert peers is not None, f"no NetworkPolicy isolates {store}"
        for peer in peers:
            assert set(peer) == {"podSelector"}, f"{store} admits more than labelled pods: {peer}"
        assert pr.admitted(peers, client)
        assert not pr.admitted(peers, {"app.kubernetes.io/name": "some-other-app"})
        assert not pr.admitted(peers, {"data-platform/postgres-client": "false"})
    redis_peers = pr.ingress_peers(
        objects,
        by_kind_name(objects, "StatefulSet", "redis")["spec"]["template"]["metadata"]["labels"],
    )
    assert not pr.admitted(redis_peers, clients["postgres"]), (
        "a Postgres client must not reach Redis"
    )
    assert not [o for o in objects if o["kind"] == "Ingress"]


def test_feature_server_is_optional_and_closed_to_unlabelled_pods() -> None:
    dev, production = stores("dev"), stores("production")
    server = by_kind_name(production, "Deployment", "feast-feature-server")
    container = server["spec"]["template"]["spec"]["containers"][0]
    # the read-only server, not `feast serve` (which would also serve /push and /materialize)
    assert container["command"] == [
        "python", "-m", "feature_store.serving", "--host", "0.0.0.0", "--port", "6566",
        "--workers", "1", "--registry-ttl", "10",
    ]  # fmt: skip
    peers = pr.ingress_peers(production, server["spec"]["template"]["metadata"]["labels"])
    assert pr.admitted(peers, {"data-platform/feature-client": "true"})
    assert not pr.admitted(peers, {"data-platform/postgres-client": "true"})
    assert by_kind_name(dev, "Deployment", "feast-feature-server")["spec"]["replicas"] == 1
    without = pr.render(
        pr.Release(
            STORES,
            "data-platform-stores",
            (pr.STORES_CHART_DIR / "values-production.yaml",),
            {"featureServer": {"enabled": False}},
        )
    )
    assert not [o for o in without if o["metadata"]["name"].startswith("feast-feature-server")]


@pytest.mark.parametrize("env", pr.ENVIRONMENTS)
def test_feature_server_workers_follow_its_cpu_limit(
    env: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The chart passes the workers the server would pick inside the pod by itself (one per
    whole CPU of its limit, on any node), and the memory limit holds them."""
    from feature_store.serving import server
    from test_k8s_kind_budget import cpu, memory_gib

    deployment = by_kind_name(stores(env), "Deployment", "feast-feature-server")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    command, limits = container["command"], container["resources"]["limits"]
    workers = int(command[command.index("--workers") + 1])
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text(f"{round(cpu(limits['cpu']) * 100_000)} 100000\n")
    monkeypatch.setattr(server.os, "sched_getaffinity", lambda pid: set(range(64)))
    assert workers == server.default_workers(cpu_max, tmp_path / "cgroup-v1")
    processes = workers if workers == 1 else workers + 1  # and uvicorn's supervisor
    assert memory_gib(limits["memory"]) * 1024 >= processes * server.WORKER_MEMORY_MIB


def test_notes_warn_against_exposing_the_feature_server() -> None:
    with helm_python.Chart.load(pr.STORES_CHART_DIR) as chart:
        values = pr.load_yaml(pr.STORES_CHART_DIR / "values-production.yaml")
        notes = chart.render(values, name=STORES, namespace=pr.NAMESPACE)[
            "data-platform-stores/templates/NOTES.txt"
        ]
    assert "NEVER expose this Service through an Ingress" in notes
    assert "dagster-postgresql-secret  key postgresql-password" in notes
