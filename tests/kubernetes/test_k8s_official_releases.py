"""The official Dagster releases: the system release (dagster/dagster) and one
dagster-user-deployments release per code location.

With the charts fetched (`make chart-deps`) they are rendered and validated like our chart.
Without them the values files are still validated against the charts' values schemas (the
reference copies in shared/reference, or $DAGSTER_CHART_SCHEMA_DIR), and our own checks cover
what those schemas let through (typos inside deployments[] and runK8sConfig)."""

from __future__ import annotations

from typing import Any

import k8s_cache
import pytest
from data_platform_dev.releases import core as pr

OFFICIAL = [r.name for r in pr.releases("dev") if r.official]


def official_objects(env: str, name: str) -> tuple[pr.Manifest, ...]:
    try:
        return k8s_cache.rendered(env, name)
    except pr.ChartMissing:
        pytest.skip(k8s_cache.MISSING_CHARTS)


def schema_or_skip(chart: str) -> dict[str, Any]:
    schema = pr.official_values_schema(chart)
    if schema is None:
        pytest.skip(
            f"no values schema for {chart}: the chart is not fetched and the reference schemas are "
            "not at ../shared/reference/dagster-helm-chart (set DAGSTER_CHART_SCHEMA_DIR)"
        )
    return schema


def test_report_whether_the_official_charts_are_here() -> None:
    """Always runs, so the test output says which path the other tests took."""
    if k8s_cache.official_charts_present():
        print(f"official charts present in {pr.VENDOR_DIR}: rendering all releases")
    else:
        print(k8s_cache.MISSING_CHARTS)
        directory = pr.reference_schema_dir()
        print(f"reference values schemas: {directory or 'not found'}")


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
    assert launcher["env_secrets"] == ["data-platform-credentials"]
    assert launcher["run_k8s_config"]["pod_spec_config"]["securityContext"]["runAsNonRoot"] is True


@pytest.mark.parametrize("env", ["dev", "production"])
def test_system_values_match_the_dagster_chart_schema(env: str) -> None:
    schema = schema_or_skip(pr.SYSTEM_CHART)
    values = k8s_cache.release(env, pr.SYSTEM_RELEASE).values()
    assert pr.values_schema_errors(pr.SYSTEM_CHART, values, schema) == []


@pytest.mark.parametrize("package", [loc.package for loc in pr.locations()])
def test_location_values_match_the_user_deployments_schema(package: str) -> None:
    schema = schema_or_skip(pr.LOCATION_CHART)
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
    schema = pr.official_values_schema(pr.LOCATION_CHART)
    if schema is not None:
        assert pr.values_schema_errors(pr.LOCATION_CHART, values, schema) == [], (
            "the schema now catches it"
        )
    assert pr.deployment_key_errors(values) == [
        "deployments[0].envSecret: not a dagster-user-deployments key"
    ]


def test_a_typo_inside_run_k8s_config_passes_the_schema_but_not_our_check() -> None:
    values = k8s_cache.release("production", pr.SYSTEM_RELEASE).values()
    run_config = values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]
    run_config["podSpecConfig"]["securityContex"] = run_config["podSpecConfig"].pop(
        "securityContext"
    )
    schema = pr.official_values_schema(pr.SYSTEM_CHART)
    if schema is not None:
        assert pr.values_schema_errors(pr.SYSTEM_CHART, values, schema) == [], (
            "the schema now catches it"
        )
    errors = pr.run_k8s_config_errors(values)
    assert len(errors) == 1 and "securityContex" in errors[0]


def test_a_typo_in_the_launcher_settings_is_caught_by_the_schema() -> None:
    schema = schema_or_skip(pr.SYSTEM_CHART)
    values = k8s_cache.release("production", pr.SYSTEM_RELEASE).values()
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    launcher["envSecret"] = launcher.pop("envSecrets")
    errors = pr.values_schema_errors(pr.SYSTEM_CHART, values, schema)
    assert any("envSecret" in error for error in errors), errors
