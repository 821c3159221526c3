"""The official Dagster releases: the system release (dagster/dagster) and one
dagster-user-deployments release per code location, rendered with the real chart: 1.13.27 when
`make chart-deps` fetched it, else the official 1.9.4 packages from
../shared/reference/dagster-helm-chart/packages (each run prints which). Nothing here skips: a
missing chart fails, naming where it was looked for. The values files are also checked against
the charts' values schemas, and our own checks cover what those schemas let through (typos
inside deployments[] and runK8sConfig)."""

from __future__ import annotations

from typing import Any

import k8s_cache
import pytest
from data_platform_dev.releases import core as pr

OFFICIAL = [r.name for r in pr.releases("dev") if r.official]


def official_objects(env: str, name: str) -> tuple[pr.Manifest, ...]:
    try:
        return k8s_cache.rendered(env, name)
    except pr.ChartMissing as missing:
        pytest.fail(str(missing))


def values_schema(chart: str) -> dict[str, Any]:
    found = pr.official_values_schema(chart)
    assert found is not None, (
        f"no values schema for {chart}: the chart is not fetched and the reference schemas are "
        "not at ../shared/reference/dagster-helm-chart (set DAGSTER_CHART_SCHEMA_DIR)"
    )
    return found


@pytest.mark.parametrize("env", pr.ENVIRONMENTS)
def test_every_official_release_renders_with_a_known_chart_version(env: str) -> None:
    """Prints the chart version and object count per release, so the log says what rendered."""
    for release in pr.releases(env):
        if not release.official:
            continue
        version = pr.chart_version_for(release)
        assert version in (pr.DAGSTER_CHART_VERSION, pr.REFERENCE_CHART_VERSION), release.name
        objects = official_objects(env, release.name)
        kinds = {o["kind"] for o in objects}
        print(f"{env} {release.name}: {len(objects)} objects, chart {release.chart} {version}")
        assert {"Deployment", "Service", "ServiceAccount"} <= kinds, (release.name, kinds)
        if release.name == pr.SYSTEM_RELEASE:
            assert {"ConfigMap", "Role", "RoleBinding"} <= kinds


@pytest.mark.parametrize("version", pr.KUBERNETES_VERSIONS)
@pytest.mark.parametrize("env", pr.ENVIRONMENTS)
@pytest.mark.parametrize("name", OFFICIAL)
def test_official_release_renders_valid_objects(name: str, env: str, version: str) -> None:
    assert pr.schema_errors(official_objects(env, name), version) == []


@pytest.mark.parametrize("env", pr.ENVIRONMENTS)
@pytest.mark.parametrize("name", OFFICIAL)
def test_official_release_follows_the_platform_policies(name: str, env: str) -> None:
    assert pr.policy_violations(official_objects(env, name), allow_generated_secrets=False) == []


def test_system_release_workspace_and_instance_as_configured() -> None:
    objects = official_objects("production", pr.SYSTEM_RELEASE)
    workspace = next(
        o
        for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("workspace-yaml")
    )
    text = workspace["data"]["workspace.yaml"]
    for location in pr.locations():
        assert f"host: {location.deployment}" in text and f"port: {location.port}" in text
    launcher = pr.instance_launcher_config(objects)
    assert launcher["job_namespace"] == pr.NAMESPACE
    assert "env_secrets" not in launcher, "runs get only their location's own Secret"
    assert launcher["run_k8s_config"]["pod_spec_config"]["securityContext"]["runAsNonRoot"] is True


@pytest.mark.parametrize("env", ["dev", "production"])
def test_system_values_match_the_dagster_chart_schema(env: str) -> None:
    schema = values_schema(pr.SYSTEM_CHART)
    values = k8s_cache.release(env, pr.SYSTEM_RELEASE).values()
    assert pr.values_schema_errors(pr.SYSTEM_CHART, values, schema) == []


@pytest.mark.parametrize("package", [loc.package for loc in pr.locations()])
def test_location_values_match_the_user_deployments_schema(package: str) -> None:
    schema = values_schema(pr.LOCATION_CHART)
    values = pr.load_yaml(pr.location_values_path(package))
    assert pr.values_schema_errors(pr.LOCATION_CHART, values, schema) == []
    assert pr.deployment_key_errors(values) == []


def test_launcher_run_k8s_config_parses_with_dagster_k8s() -> None:
    assert (
        pr.run_k8s_config_errors(k8s_cache.release("production", pr.SYSTEM_RELEASE).values()) == []
    )


def test_a_typo_inside_deployments_passes_the_schema_but_not_our_check() -> None:
    values = pr.load_yaml(pr.location_values_path("ingestion"))
    values["deployments"][0]["envSecret"] = values["deployments"][0].pop("envSecrets")
    assert (
        pr.values_schema_errors(pr.LOCATION_CHART, values, values_schema(pr.LOCATION_CHART)) == []
    ), "the schema now catches it"
    assert pr.deployment_key_errors(values) == [
        "deployments[0].envSecret: not a dagster-user-deployments key"
    ]


def test_a_typo_inside_run_k8s_config_passes_the_schema_but_not_our_check() -> None:
    values = k8s_cache.release("production", pr.SYSTEM_RELEASE).values()
    run_config = values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]
    run_config["podSpecConfig"]["securityContex"] = run_config["podSpecConfig"].pop(
        "securityContext"
    )
    assert pr.values_schema_errors(pr.SYSTEM_CHART, values, values_schema(pr.SYSTEM_CHART)) == [], (
        "the schema now catches it"
    )
    errors = pr.run_k8s_config_errors(values)
    assert len(errors) == 1 and "securityContex" in errors[0]


def test_a_typo_in_the_launcher_settings_is_caught_by_the_schema() -> None:
    schema = values_schema(pr.SYSTEM_CHART)
    values = k8s_cache.release("production", pr.SYSTEM_RELEASE).values()
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    launcher["envSecret"] = launcher.pop("envSecrets")
    errors = pr.values_schema_errors(pr.SYSTEM_CHART, values, schema)
    assert any("envSecret" in error for error in errors), errors
