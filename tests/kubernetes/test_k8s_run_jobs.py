"""The Kubernetes Job each location's runs execute in, built offline with dagster-k8s's own
K8sContainerContext and construct_dagster_k8s_job from the system release's run launcher and
the location's release values (the rendered instance ConfigMap and code server container
context when the official charts are here)."""

from __future__ import annotations

from typing import Any

import k8s_cache
import pytest
from data_platform_dev.releases import core as pr

LOCATIONS = pr.locations()


def run_job(location: Any, env: str = "production") -> pr.Manifest:
    values = pr.load_yaml(pr.location_values_path(location.package))
    item = values["deployments"][0]
    image = f"{item['image']['repository']}:{item['image']['tag']}"
    if k8s_cache.official_charts_present():
        launcher = pr.instance_launcher_config(k8s_cache.rendered(env, pr.SYSTEM_RELEASE))
        context = pr.rendered_container_context(k8s_cache.rendered(env, location.deployment))
    else:
        launcher = pr.launcher_config_from_values(
            k8s_cache.release(env, pr.SYSTEM_RELEASE).values()
        )
        context = pr.container_context_from_values(item, location.deployment)
    return pr.build_run_job(launcher, context, image, location.name)


@pytest.mark.parametrize("location", LOCATIONS, ids=[loc.name for loc in LOCATIONS])
def test_run_job_is_valid_and_carries_the_location_settings(location: Any) -> None:
    job = run_job(location)
    for version in pr.KUBERNETES_VERSIONS:
        assert pr.schema_errors([job], version) == []
    assert pr.workload_violations(job) == []
    assert job["metadata"]["namespace"] == pr.NAMESPACE
    pod = job["spec"]["template"]
    container = pod["spec"]["containers"][0]
    values = pr.load_yaml(pr.location_values_path(location.package))["deployments"][0]

    assert container["image"] == f"{location.image}:{values['image']['tag']}"
    secrets = {s["secretRef"]["name"] for s in container["envFrom"] if "secretRef" in s}
    assert secrets == {s["name"] for s in values["envSecrets"]}, "only the location's own Secrets"
    configmaps = {s["configMapRef"]["name"] for s in container["envFrom"] if "configMapRef" in s}
    assert "data-platform-env" in configmaps
    password = next(e for e in container["env"] if e["name"] == "DAGSTER_PG_PASSWORD")
    assert password["valueFrom"]["secretKeyRef"] == {
        "name": "dagster-postgresql-secret",
        "key": "postgresql-password",
    }
    assert container["resources"] == values["resources"], (
        "includeConfigInLaunchedRuns gives runs the location's size"
    )
    assert pod["metadata"]["labels"]["data-platform/postgres-client"] == "true"
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert {m["mountPath"] for m in container["volumeMounts"]} >= {
        "/tmp",
        "/opt/dagster/dagster_home/storage",
    }
    env = {e["name"]: e.get("value") for e in container["env"]}
    for variable in values.get("env") or []:
        assert env[variable["name"]] == variable["value"]
    assert job["spec"]["backoffLimit"] == 0


def test_transformation_runs_get_the_export_credentials_and_others_do_not() -> None:
    for location in LOCATIONS:
        container = run_job(location)["spec"]["template"]["spec"]["containers"][0]
        secrets = {s["secretRef"]["name"] for s in container["envFrom"] if "secretRef" in s}
        assert ("data-platform-export-s3" in secrets) == (location.name == "transformation"), (
            location.name
        )


def test_a_typo_in_run_k8s_config_stops_the_job_from_being_built() -> None:
    location = LOCATIONS[0]
    values = pr.load_yaml(pr.location_values_path(location.package))["deployments"][0]
    launcher = pr.launcher_config_from_values(
        k8s_cache.release("production", pr.SYSTEM_RELEASE).values()
    )
    launcher["run_k8s_config"]["container_config"] = {"resourcez": {}}
    with pytest.raises(Exception, match="resourcez"):
        pr.build_run_job(
            launcher,
            pr.container_context_from_values(values, location.deployment),
            f"{location.image}:x",
            location.name,
        )
