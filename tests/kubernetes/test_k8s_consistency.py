"""Consistency across the files that describe one platform: the locations registry, the system
release's workspace, each team's release values, skaffold, the Dockerfiles, CODEOWNERS, the
Secrets and ConfigMaps the releases reference, and the ports. Driven by the registry, so a
fourth location is checked without editing this file."""

from __future__ import annotations

import re
from typing import Any

import k8s_cache
import pytest
from data_platform_dev.releases import core as pr

LOCATIONS = pr.locations()
IDS = [loc.name for loc in LOCATIONS]


def system_values(env: str = "production") -> dict[str, Any]:
    return k8s_cache.release(env, pr.SYSTEM_RELEASE).values()


def stores_values(env: str = "production") -> dict[str, Any]:
    """Our chart's defaults merged with the environment's values file, as Helm does."""
    defaults = pr.load_yaml(pr.STORES_CHART_DIR / "values.yaml")
    return pr.deep_merge(defaults, k8s_cache.release(env, pr.STORES_RELEASE).values())


def deployment(location: Any) -> dict[str, Any]:
    values = pr.load_yaml(pr.location_values_path(location.package))
    assert len(values["deployments"]) == 1, f"{location.name}: one code server per team release"
    return dict(values["deployments"][0])


def skaffold() -> dict[str, Any]:
    return dict(pr.load_yaml(pr.REPO_ROOT / "skaffold.yaml"))


def test_workspace_lists_exactly_the_registered_locations() -> None:
    servers = system_values()["dagsterWebserver"]["workspace"]["servers"]
    assert system_values()["dagster-user-deployments"] == {
        "enabled": True,
        "enableSubchart": False,
        "deployments": [],
    }
    assert "externalConfigmap" not in system_values()["dagsterWebserver"]["workspace"]
    assert sorted((s["host"], s["port"], s["name"]) for s in servers) == sorted(
        (loc.deployment, loc.port, loc.name) for loc in LOCATIONS
    )


@pytest.mark.parametrize("location", LOCATIONS, ids=IDS)
def test_location_release_matches_the_registry(location: Any) -> None:
    item = deployment(location)
    assert item["name"] == location.deployment, "the Service is named after deployments[].name"
    assert item["port"] == location.port
    assert item["image"]["repository"] == location.image
    assert item["dagsterApiGrpcArgs"] == ["-m", location.module, "--location-name", location.name]
    assert "codeServerArgs" not in item, "one command per deployment (the chart prefers grpc)"
    assert item["includeConfigInLaunchedRuns"] == {"enabled": True}
    release_names = [r.name for r in pr.releases("dev") if r.chart == pr.LOCATION_CHART]
    assert location.deployment in release_names


def dockerfile_stages() -> dict[str, str]:
    """images/Dockerfile split into its stages, by name."""
    stages: dict[str, str] = {}
    name = None
    for line in pr.DOCKERFILE.read_text().splitlines():
        match = re.match(r"^FROM (\S+) AS (\S+)$", line)
        if match:
            name = match.group(2)
            stages[name] = f"{line}\n"
        elif name is not None:
            stages[name] += f"{line}\n"
    return stages


@pytest.mark.parametrize("location", LOCATIONS, ids=IDS)
def test_location_image_target_serves_the_same_module_and_port(location: Any) -> None:
    stage = dockerfile_stages()[location.deployment]
    assert stage.startswith(f"FROM runtime AS {location.deployment}\n")
    assert (
        f'"-p", "{location.port}", "-m", "{location.module}", "--location-name", "{location.name}"'
        in stage
    )
    assert f"EXPOSE {location.port}" in stage
    assert f'"grpc-health-check", "-p", "{location.port}"' in stage
    build = next(b for b in pr.image_builds() if b.image == location.image)
    assert (build.target, build.package, build.source) == (
        location.deployment,
        f"location-{location.deployment}",
        location.package,
    )


def test_one_dockerfile_pinned_base_and_only_the_built_package_inside() -> None:
    dockerfile = pr.DOCKERFILE.read_text()
    froms = re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert set(froms) <= {"${BASE_IMAGE}", "builder", "runtime"}, froms
    default = re.search(r"^ARG BASE_IMAGE=(\S+)$", dockerfile, re.MULTILINE)
    assert default and re.fullmatch(
        r"python:3\.11[\w.-]*-slim-bookworm@sha256:[0-9a-f]{64}", default.group(1)
    ), "the base is a build argument whose default is pinned by digest"
    stages = dockerfile_stages()
    builder, runtime = stages["builder"], stages["runtime"]
    # uv sync --frozen needs every workspace member's manifest, the dev package's too
    members = sorted((pr.REPO_ROOT / "code_locations").glob("*/pyproject.toml"))
    assert len(members) >= len(LOCATIONS) + 2
    for member in members:
        folder = member.parent.relative_to(pr.REPO_ROOT)
        assert f"COPY {folder}/pyproject.toml {folder}/" in builder, folder
    # the builder copies the shared library and the built package's folder, nothing else
    copied = re.findall(r"^COPY code_locations/(\S+)/ ", builder, re.MULTILINE)
    assert copied == ["data_platform_common", "${SOURCE}"]
    assert builder.count('--no-dev --no-install-workspace --package "${PACKAGE}"') == 1
    assert builder.count('uv sync --frozen --no-dev --package "${PACKAGE}"') == 1
    assert re.search(r"^USER 10001:10001$", runtime, re.MULTILINE)
    assert "data_platform_dev" not in runtime + "".join(stages[loc.deployment] for loc in LOCATIONS)
    assert pr.DEV_UPSTREAM_IMAGE not in {b.image for b in pr.image_builds("production")}


def test_images_carry_the_repository_layout_and_their_extra_projects() -> None:
    stages = dockerfile_stages()
    transformation = stages["dbt-builder"] + stages["transformation"]
    assert "dagster-dbt project prepare-and-package" in transformation
    assert "code_locations/transformation/src/transformation/dbt_config.py" in transformation
    for variable in (
        "DBT_TARGET_PATH=/tmp/dbt/target",
        "DBT_LOG_PATH=/tmp/dbt/logs",
        "DBT_TARGET=k8s",
    ):
        assert variable in transformation
    feature_store = stages["feature-store"]
    assert "COPY --chown=root:root feast_repo/ /app/feast_repo/" in feature_store
    assert "FEAST_REPO_PATH=/app/feast_repo" in feature_store
    ignored = (pr.REPO_ROOT / ".dockerignore").read_text().split()
    for kept_out in (".venv", ".platform", "**/.env", "dbt/target", ".git"):
        assert kept_out in ignored


def test_skaffold_builds_and_deploys_every_location_with_its_artifact() -> None:
    config = skaffold()
    artifacts = {a["image"]: a["docker"] for a in config["build"]["artifacts"]}
    assert artifacts == {
        build.image: {
            "dockerfile": "images/Dockerfile",
            "target": build.target,
            "buildArgs": build.build_args,
        }
        for build in pr.image_builds("dev")
    }
    upstream = [a["image"] for a in config["build"]["artifacts"]].index(pr.DEV_UPSTREAM_IMAGE)
    releases = config["deploy"]["helm"]["releases"]
    assert [r["name"] for r in releases] == [r.name for r in pr.releases("dev")], "deployment order"
    for release in releases:
        assert release["namespace"] == pr.NAMESPACE
    by_name = {r["name"]: r for r in releases}
    for location in LOCATIONS:
        release = by_name[location.deployment]
        token = re.sub(r"[^A-Za-z0-9]", "_", location.image)
        assert (
            release["remoteChart"] == pr.LOCATION_CHART
            and str(release["version"]) == pr.DAGSTER_CHART_VERSION
        )
        assert release["valuesFiles"] == [
            str(pr.location_values_path(location.package).relative_to(pr.REPO_ROOT))
        ]
        assert release["setValueTemplates"] == {
            "deployments[0].image.repository": f"{{{{.IMAGE_REPO_{token}}}}}",
            "deployments[0].image.tag": f"{{{{.IMAGE_TAG_{token}}}}}",
        }
    assert by_name[pr.SYSTEM_RELEASE]["remoteChart"] == pr.SYSTEM_CHART
    assert by_name[pr.SYSTEM_RELEASE]["repo"] == pr.DAGSTER_HELM_REPO
    forward = config["portForward"][0]
    assert (forward["resourceName"], forward["port"], forward["address"], forward["localPort"]) == (
        *pr.webserver_service(k8s_cache.rendered("dev", pr.SYSTEM_RELEASE)),
        "127.0.0.1",
        3000,
    )
    production = next(p for p in config["profiles"] if p["name"] == "production")
    assert {"op": "remove", "path": "/deploy/kubeContext"} in production["patches"]
    assert {"op": "remove", "path": f"/build/artifacts/{upstream}"} in production["patches"], (
        "the dev upstream image is never built for production"
    )


def test_codeowners_maps_each_location_to_its_team() -> None:
    owners: dict[str, str] = {}
    for line in (pr.REPO_ROOT / "CODEOWNERS").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            path, owner = line.split()[:2]
            owners[path] = owner
    for location in LOCATIONS:
        team = f"@data-platform/{location.team}"
        assert owners[f"/code_locations/{location.package}/"] == team, "code and deploy values"


def test_system_release_points_at_our_postgres() -> None:
    system, stores = system_values(), stores_values()
    postgresql = system["postgresql"]
    assert postgresql["enabled"] is False and system["generatePostgresqlPasswordSecret"] is False
    assert postgresql["postgresqlHost"] in (
        stores["postgres"]["name"],
        f"{stores['postgres']['name']}.{pr.NAMESPACE}.svc",
    )
    assert postgresql["service"]["port"] == stores["postgres"]["port"]
    assert postgresql["postgresqlUsername"] == stores["postgres"]["teamRoles"]["instance"]["role"]
    assert postgresql["postgresqlDatabase"] == stores["postgres"]["databases"]["dagster"]
    assert (postgresql["image"]["repository"], postgresql["image"]["tag"]) == (
        stores["images"]["postgres"]["repository"],
        stores["images"]["postgres"]["tag"],
    )


def test_run_launcher_coordinator_monitoring_and_retries() -> None:
    system = system_values()
    launcher = system["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    assert launcher["config"]["k8sRunLauncher"]["jobNamespace"] == pr.NAMESPACE
    daemon = system["dagsterDaemon"]
    coordinator = daemon["runCoordinator"]
    assert coordinator["type"] == "QueuedRunCoordinator" and coordinator["enabled"]
    assert coordinator["config"]["queuedRunCoordinator"]["maxConcurrentRuns"] > 0
    assert coordinator["config"]["queuedRunCoordinator"]["tagConcurrencyLimits"]
    monitoring = system["additionalInstanceConfig"]["run_monitoring"]
    assert not daemon["runMonitoring"]["enabled"], "one run_monitoring key in dagster.yaml"
    assert monitoring["enabled"] and monitoring["max_runtime_seconds"] > 0
    assert daemon["runRetries"]["enabled"]
    assert daemon["runRetries"]["maxRetries"] > 0
    stores_np = stores_values()["networkPolicy"]["dagster"]
    assert stores_np["webserverPort"] == system["dagsterWebserver"]["service"]["port"]
    assert stores_np["systemRelease"] == pr.SYSTEM_RELEASE


def deployed_secrets() -> dict[str, set[str]]:
    """Secret name -> keys that exist once the platform is deployed: the development render
    generates each of them; production names the same roles (values-production.yaml)."""
    generated = {
        o["metadata"]["name"]: set(o["data"])
        for o in k8s_cache.rendered("dev", pr.STORES_RELEASE)
        if o["kind"] == "Secret"
    }
    production = stores_values()["secrets"]
    for role, keys in pr.SECRET_KEYS.items():
        assert generated[production[role]["existingSecret"]] == set(keys), role
    return generated


def referenced_secrets() -> list[tuple[str, str | None, str]]:
    """(secret, key or None for the whole Secret, where) for every reference in every release."""
    references: list[tuple[str, str | None, str]] = []
    system = system_values()
    references.append(
        (
            system["global"]["postgresqlSecretName"],
            "postgresql-password",
            "system global.postgresqlSecretName",
        )
    )
    for item in system["runLauncher"]["config"]["k8sRunLauncher"]["envSecrets"]:
        references.append((item["name"], None, "runLauncher envSecrets"))
    for location in LOCATIONS:
        values = pr.load_yaml(pr.location_values_path(location.package))
        references.append(
            (
                values["global"]["postgresqlSecretName"],
                "postgresql-password",
                f"{location.name} global",
            )
        )
        for item in deployment(location).get("envSecrets") or []:
            references.append((item["name"], None, f"{location.name} envSecrets"))
    for env in pr.ENVIRONMENTS:
        for obj in k8s_cache.all_rendered(env):
            template = pr.pod_template(obj)
            if template is None:
                continue
            where = f"{env} {pr.describe(obj)}"
            for volume in template[1].get("volumes") or []:
                if "secret" in volume:
                    for item in volume["secret"].get("items") or [{"key": None}]:
                        references.append((volume["secret"]["secretName"], item["key"], where))
            for _, container in pr.containers(template[1]):
                for source in container.get("envFrom") or []:
                    if "secretRef" in source and not source["secretRef"].get("optional"):
                        references.append((source["secretRef"]["name"], None, where))
                for variable in container.get("env") or []:
                    ref = (variable.get("valueFrom") or {}).get("secretKeyRef")
                    if ref:
                        references.append((ref["name"], ref["key"], where))
    return references


def test_every_referenced_secret_and_key_is_deployed() -> None:
    deployed = deployed_secrets()
    missing = [
        f"{where}: Secret {name}" + (f" key {key}" if key else "")
        for name, key, where in referenced_secrets()
        if name not in deployed or (key is not None and key not in deployed[name])
    ]
    assert missing == []


def test_a_misspelt_secret_reference_is_reported() -> None:
    deployed = deployed_secrets()
    assert "data-platform-credential" not in deployed
    assert "POSTGRES_PASSWD" not in deployed["data-platform-credentials"]


def test_every_referenced_configmap_is_deployed() -> None:
    configmaps = {
        o["metadata"]["name"]
        for o in k8s_cache.rendered("production", pr.STORES_RELEASE)
        if o["kind"] == "ConfigMap"
    }
    references = [
        item["name"]
        for item in system_values()["runLauncher"]["config"]["k8sRunLauncher"]["envConfigMaps"]
    ]
    for location in LOCATIONS:
        references += [item["name"] for item in deployment(location).get("envConfigMaps") or []]
    assert set(references) <= configmaps


def platform_pods() -> dict[str, dict[str, str]]:
    """Pod labels of every client of the stores, from the rendered official releases when the
    charts are here, else as those charts label them (selector labels + our `labels` values)."""
    system = system_values("dev")
    pods: dict[str, dict[str, str]] = {}
    if k8s_cache.official_charts_present():
        for release in pr.releases("dev"):
            for obj in k8s_cache.rendered("dev", release.name) if release.official else ():
                template = pr.pod_template(obj)
                if template is None or obj["kind"] != "Deployment":
                    continue
                labels = dict(template[0].get("labels") or {})
                component = labels.get("component", "")
                role = (
                    f"{labels.get('deployment')}-code-server"
                    if component == "user-deployments"
                    else component
                )
                pods[role] = labels
    else:
        base = {
            "app.kubernetes.io/name": "dagster",
            "app.kubernetes.io/instance": pr.SYSTEM_RELEASE,
        }
        pods["dagster-webserver"] = {
            **base,
            "component": "dagster-webserver",
            **system["dagsterWebserver"]["labels"],
        }
        pods["dagster-daemon"] = {
            **base,
            "component": "dagster-daemon",
            "deployment": "daemon",
            **system["dagsterDaemon"]["labels"],
        }
        for location in LOCATIONS:
            item = deployment(location)
            pods[f"{location.deployment}-code-server"] = {
                "app.kubernetes.io/name": pr.LOCATION_CHART,
                "app.kubernetes.io/instance": location.deployment,
                "component": "user-deployments",
                "deployment": item["name"],
                **item.get("labels", {}),
            }
    launcher = pr.launcher_config_from_values(system)
    for location in LOCATIONS:
        item = deployment(location)
        job = pr.build_run_job(
            launcher,
            pr.container_context_from_values(item, location.deployment),
            f"{location.image}:test",
            location.name,
        )
        pods[f"{location.deployment}-run"] = job["spec"]["template"]["metadata"]["labels"]
    return pods


def test_platform_pods_reach_exactly_the_stores_they_need() -> None:
    objects = k8s_cache.all_rendered("dev")

    def target(store: str) -> dict[str, str]:
        statefulset = next(
            o for o in objects if o["kind"] == "StatefulSet" and o["metadata"]["name"] == store
        )
        return dict(statefulset["spec"]["template"]["metadata"]["labels"])

    postgres = pr.ingress_peers(objects, target("postgres"))
    redis = pr.ingress_peers(objects, target("redis"))
    for name, labels in platform_pods().items():
        assert pr.admitted(postgres, labels), f"{name} cannot reach Postgres"
        needs_redis = "feature" in name
        assert pr.admitted(redis, labels) == needs_redis, (
            f"{name}: Redis access should be {needs_redis}"
        )
    migrate = {
        "batch.kubernetes.io/job-name": f"{pr.SYSTEM_RELEASE}-dagster-webserver-instance-migrate"
    }
    assert pr.admitted(postgres, migrate), "the documented migration Job must reach Postgres"


def test_code_servers_answer_only_the_webserver_and_daemon() -> None:
    objects = k8s_cache.all_rendered("dev")
    pods = platform_pods()
    for location in LOCATIONS:
        peers = pr.ingress_peers(objects, pods[f"{location.deployment}-code-server"])
        assert peers is not None, f"no NetworkPolicy isolates the {location.name} code server"
        assert pr.admitted(peers, pods["dagster-webserver"]) and pr.admitted(
            peers, pods["dagster-daemon"]
        )
        assert not pr.admitted(peers, pods[f"{location.deployment}-run"])
        assert not pr.admitted(peers, {"app.kubernetes.io/name": "anything-else"})
