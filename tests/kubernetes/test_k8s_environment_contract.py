"""The environment contract: every variable a location's code reads at run time is given to its
code server Deployment and to the run pod the K8sRunLauncher builds for it
(construct_dagster_k8s_job with the rendered instance config and the rendered container context
of includeConfigInLaunchedRuns), with development and production values. What the code reads is
found in the code itself: EnvVar fields of the location's resources, dbt's env_var() without a
default, feature_store.yaml's ${VAR}, and direct environment reads. Optional variables are
declared once, in data_platform.settings.OPTIONAL_VARIABLES."""

from __future__ import annotations

import importlib
import re
from functools import cache
from pathlib import Path
from typing import Any

import dagster as dg
import k8s_cache
import pytest
from data_platform import settings
from data_platform_dev.releases import core as pr

LOCATIONS = pr.locations()
IDS = [loc.name for loc in LOCATIONS]
DIRECT_READ = re.compile(
    r"(?:os\.environ|environ)(?:\.get)?[\[(]\s*([\w.]+)|EnvVar(?:\.int)?\(([\w.]+)\)\.get_value"
)
DBT_ENV_VAR = re.compile(r"env_var\(\s*['\"](\w+)['\"]\s*(,)?")


def env_var_fields(resource: Any) -> set[str]:
    """Names of the EnvVar values anywhere in a resource's configuration."""
    if hasattr(resource, "env_var_name"):
        return {str(resource.env_var_name)}
    found: set[str] = set()
    if hasattr(type(resource), "model_fields"):
        for field in type(resource).model_fields:
            found |= env_var_fields(getattr(resource, field, None))
    elif isinstance(resource, (list, tuple)):
        for item in resource:
            found |= env_var_fields(item)
    elif isinstance(resource, dict):
        for item in resource.values():
            found |= env_var_fields(item)
    return found


def _resolve(expression: str, module: Any) -> str | None:
    """A name used in an environment read: a constant of the module or of settings."""
    head, _, attribute = expression.rpartition(".")
    owner = settings if head == "settings" else module
    value = getattr(owner, attribute or head, None)
    return value if isinstance(value, str) and value.isupper() else None


def direct_reads(package: str) -> set[str]:
    """Variables read straight from the environment in the location's and the shared code."""
    found: set[str] = set()
    for name in (package, "data_platform"):
        root = Path(importlib.import_module(name).__file__ or "").parent
        for path in root.rglob("*.py"):
            text = path.read_text()
            if not DIRECT_READ.search(text):
                continue
            module_name = ".".join(path.relative_to(root.parent).with_suffix("").parts)
            module = importlib.import_module(module_name.removesuffix(".__init__"))
            for match in DIRECT_READ.finditer(text):
                resolved = _resolve(match.group(1) or match.group(2), module)
                if resolved:
                    found.add(resolved)
    return found


def dbt_reads() -> tuple[set[str], set[str]]:
    """(required, with a default) env_var() names in dbt's profiles, project and models."""
    required: set[str] = set()
    defaulted: set[str] = set()
    dbt = pr.REPO_ROOT / "dbt"
    for path in [*dbt.glob("profiles/*.yml"), dbt / "dbt_project.yml", *dbt.rglob("models/**/*")]:
        if path.is_file():
            for name, comma in DBT_ENV_VAR.findall(path.read_text()):
                (defaulted if comma else required).add(name)
    return required, defaulted


@cache
def reads(location: Any) -> frozenset[str]:
    """Every variable the location's code reads at run time."""
    module = importlib.import_module(location.module)
    defs = module.defs() if callable(module.defs) else module.defs
    names: set[str] = set()
    for resource in (defs.resources or {}).values():
        names |= env_var_fields(resource)
    names |= direct_reads(location.package)
    if location.name == "transformation":
        names |= dbt_reads()[0] | {"DBT_TARGET"}
    if location.name == "feature_store":
        from feature_store.feast_config import placeholders

        names |= set(placeholders(pr.REPO_ROOT / "feast_repo"))
    return frozenset(names)


def secrets_of(env: str) -> dict[str, dict[str, str]]:
    """Secrets as deployed: generated in development, created by their owner in production
    (the names values-production.yaml gives, with the keys every role must hold)."""
    _, generated = pr.config_data(k8s_cache.rendered("dev", pr.STORES_RELEASE))
    if env == "dev":
        return generated
    values = pr.deep_merge(
        pr.load_yaml(pr.STORES_CHART_DIR / "values.yaml"),
        pr.load_yaml(pr.STORES_CHART_DIR / "values-production.yaml"),
    )["secrets"]
    return {
        values[role]["existingSecret"]: dict.fromkeys(keys, "<set by its owner>")
        for role, keys in pr.SECRET_KEYS.items()
    }


def pod_environments(env: str, location: Any) -> dict[str, dict[str, str]]:
    """What the code server and the run pod of this location get, as Kubernetes resolves it."""
    objects = k8s_cache.all_rendered(env)
    configmaps, _ = pr.config_data(objects)
    secrets = secrets_of(env)
    image = pr.image_environment(location.deployment)
    server = next(
        o for o in k8s_cache.rendered(env, location.deployment) if o["kind"] == "Deployment"
    )
    launcher = pr.instance_launcher_config(k8s_cache.rendered(env, pr.SYSTEM_RELEASE))
    context = pr.rendered_container_context(k8s_cache.rendered(env, location.deployment))
    job = pr.build_run_job(launcher, context, f"{location.image}:x", location.name)
    result = {}
    for role, obj in (("code server", server), ("run pod", job)):
        container = pr.pod_template(obj)[1]["containers"][0]  # type: ignore[index]
        result[role] = {**image, **pr.container_environment(container, configmaps, secrets)}
    return result


def test_the_scanner_finds_what_the_code_reads() -> None:
    by_name = {loc.name: reads(loc) for loc in LOCATIONS}
    assert {"JOURNAL_API_URL", "POSTGRES_HOST", "POSTGRES_PORT"} <= by_name["ingestion"]
    assert {"EXPORT_URI", "EXPORT_S3_ENDPOINT_URL", "WAREHOUSE_DB"} <= by_name["transformation"]
    assert {"REDIS_HOST", "REDIS_PASSWORD", "FEAST_REGISTRY_DB", "FEAST_REPO_PATH"} <= by_name[
        "feature_store"
    ]
    assert "JOURNAL_API_URL" not in by_name["feature_store"]


def test_optional_variables_are_declared_once_and_read_somewhere() -> None:
    read_anywhere = set().union(*(reads(loc) for loc in LOCATIONS))
    assert read_anywhere >= settings.OPTIONAL_VARIABLES, "an optional variable nobody reads"
    _, defaulted = dbt_reads()
    required_dbt, _ = dbt_reads()
    assert defaulted <= required_dbt | {"DBT_TARGET"}, (
        "dbt defaults only serve the local target; on Kubernetes every value is required"
    )


@pytest.mark.parametrize("env", pr.ENVIRONMENTS)
@pytest.mark.parametrize("location", LOCATIONS, ids=IDS)
def test_code_server_and_run_pod_get_every_variable_the_code_reads(location: Any, env: str) -> None:
    required = reads(location) - settings.OPTIONAL_VARIABLES
    for role, environment in pod_environments(env, location).items():
        missing = sorted(required - set(environment))
        assert missing == [], f"{env} {location.name} {role} lacks {missing}"


def test_the_exports_go_where_export_uri_says() -> None:
    """The gold export run failed on Kubernetes because nothing set EXPORT_URI."""
    transformation = next(loc for loc in LOCATIONS if loc.name == "transformation")
    production = pod_environments("production", transformation)["run pod"]
    assert production["EXPORT_URI"] == "s3://gold-exports"
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(production)
    dev = pod_environments("dev", transformation)["run pod"]
    assert dev["EXPORT_URI"].startswith("/tmp/")


def test_a_variable_missing_from_the_releases_is_reported() -> None:
    ingestion = LOCATIONS[0]
    environment = pod_environments("production", ingestion)["run pod"]
    del environment["JOURNAL_API_URL"]
    required = reads(ingestion) - settings.OPTIONAL_VARIABLES
    assert sorted(required - set(environment)) == ["JOURNAL_API_URL"]


def test_env_var_fields_sees_through_int_env_vars() -> None:
    class Probe(dg.ConfigurableResource):
        port: int
        host: str

    probe = Probe(port=dg.EnvVar.int("SOME_PORT"), host=dg.EnvVar("SOME_HOST"))
    assert env_var_fields(probe) == {"SOME_PORT", "SOME_HOST"}
