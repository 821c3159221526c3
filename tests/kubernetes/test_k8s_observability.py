"""Observability and access on Kubernetes: step logs in the platform's object store where the UI
reads them, run Jobs kept over a weekend, the UI reachable only from the ingress namespace, and
every pod admitted by Pod Security Admission's `restricted` profile."""

from __future__ import annotations

import tomllib
from functools import cache
from typing import Any

import k8s_cache
import pytest
import yaml
from data_platform_dev.releases import core as pr
from data_platform_dev.releases import deploy

pytestmark = pytest.mark.skipif(
    not k8s_cache.official_charts_present(), reason=k8s_cache.MISSING_CHARTS
)


def instance_yaml(env: str) -> dict[str, Any]:
    (configmap,) = [
        o
        for o in k8s_cache.rendered(env, pr.SYSTEM_RELEASE)
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-instance")
    ]
    return dict(yaml.safe_load(configmap["data"]["dagster.yaml"]))


@cache
def run_jobs(env: str) -> dict[str, pr.Manifest]:
    launcher = pr.instance_launcher_config(k8s_cache.rendered(env, pr.SYSTEM_RELEASE))
    jobs = {}
    for location in pr.locations():
        context = pr.rendered_container_context(k8s_cache.rendered(env, location.deployment))
        jobs[location.name] = pr.build_run_job(
            launcher, context, f"{location.image}:x", location.name
        )
    return jobs


def stores_values(env: str) -> dict[str, Any]:
    return k8s_cache.release(env, pr.STORES_RELEASE).values() | {}


def merged_stores_values(env: str) -> dict[str, Any]:
    defaults = pr.load_yaml(pr.STORES_CHART_DIR / "values.yaml")
    return pr.deep_merge(defaults, stores_values(env))


def webserver(env: str) -> pr.Manifest:
    (deployment,) = [
        o
        for o in k8s_cache.rendered(env, pr.SYSTEM_RELEASE)
        if o["kind"] == "Deployment"
        and o["metadata"]["labels"].get("component") == "dagster-webserver"
    ]
    return deployment


def env_secrets(pod_spec: dict[str, Any]) -> set[str]:
    return {
        source["secretRef"]["name"]
        for container in pod_spec["containers"]
        for source in container.get("envFrom") or []
        if "secretRef" in source
    }


def mounted_under(pod_spec: dict[str, Any], path: str) -> bool:
    """Whether `path` lies on a volume mounted in the first container (read-only root)."""
    mounts = pod_spec["containers"][0].get("volumeMounts") or []
    return any(
        path.startswith(m["mountPath"].rstrip("/") + "/") and not m.get("readOnly") for m in mounts
    )


def test_step_logs_go_to_the_object_store_the_ui_reads() -> None:
    from dagster._serdes.config_class import ConfigurableClassData
    from dagster_aws.s3.compute_log_manager import S3ComputeLogManager

    compute_logs = instance_yaml("production")["compute_logs"]
    manager = ConfigurableClassData(
        compute_logs["module"], compute_logs["class"], yaml.safe_dump(compute_logs["config"])
    ).rehydrate(S3ComputeLogManager)
    assert isinstance(manager, S3ComputeLogManager)
    config = compute_logs["config"]
    exports = merged_stores_values("production")["platform"]["exportS3"]
    assert config["endpoint_url"] == exports["endpointUrl"], "one object store for the platform"
    assert config["bucket"] and config["bucket"] != exports["bucket"]
    # the reader and every writer hold one object-store key (never two Secrets with the same
    # variables: one would shadow the other) and a writable local_dir
    secrets = merged_stores_values("production")["secrets"]
    logs = secrets["computeLogsS3"]["existingSecret"]
    exports = secrets["exportS3"]["existingSecret"]
    assert set(pr.SECRET_KEYS["computeLogsS3"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    ui = webserver("production")["spec"]["template"]["spec"]
    assert logs in env_secrets(ui)
    assert mounted_under(ui, config["local_dir"])
    for name, job in run_jobs("production").items():
        pod = job["spec"]["template"]["spec"]
        keys = env_secrets(pod) & {logs, exports}
        expected = {exports} if name == "transformation" else {logs}
        assert keys == expected, f"{name} run pods: object-store keys {keys}"
        assert mounted_under(pod, config["local_dir"]), f"{name}: local_dir on a read-only root"


def test_development_keeps_step_logs_in_the_pods() -> None:
    """kind has no object store: an S3 manager there would fail every step's log upload."""
    assert instance_yaml("dev")["compute_logs"]["class"] == "NoOpComputeLogManager"


def test_every_location_image_installs_dagster_aws() -> None:
    """The run pods (location images) write the step logs: dagster-aws must be in each image's
    dependency closure, at the libraries' pinned version."""
    lock = tomllib.loads((pr.REPO_ROOT / "uv.lock").read_text())
    packages = {p["name"]: p for p in lock["package"]}
    assert packages["dagster-aws"]["version"] == "0.29.27"

    def closure(name: str, seen: set[str]) -> set[str]:
        if name in seen or name not in packages:
            return seen
        seen.add(name)
        for dependency in packages[name].get("dependencies") or []:
            closure(dependency["name"], seen)
        return seen

    for build in pr.image_builds("production"):
        assert "dagster-aws" in closure(build.package, set()), build.package


@pytest.mark.parametrize("env", pr.ENVIRONMENTS)
def test_finished_run_jobs_stay_over_a_weekend(env: str) -> None:
    for name, job in run_jobs(env).items():
        assert job["spec"]["ttlSecondsAfterFinished"] >= 3 * 86400, name


@pytest.mark.parametrize("env", pr.ENVIRONMENTS)
def test_the_ui_is_reachable_only_from_the_ingress_namespace(env: str) -> None:
    objects = k8s_cache.all_rendered(env)
    labels = webserver(env)["spec"]["template"]["metadata"]["labels"]
    peers = pr.ingress_peers(objects, labels)
    assert peers is not None, "no NetworkPolicy isolates the webserver"
    # no pod of the platform's namespace: code servers, run pods (which hold owner credentials
    # and could launch runs through the UI), the stores
    same_namespace = [
        {"app.kubernetes.io/name": "anything"},
        *(job["spec"]["template"]["metadata"]["labels"] for job in run_jobs(env).values()),
        *(labels for _, labels in pr.pods(objects)),
    ]
    for client in same_namespace:
        assert not pr.admitted(peers, client), f"{client} reaches the UI"
    assert not pr.admitted(peers, {}, namespace="default")
    ingress_namespace = merged_stores_values(env)["networkPolicy"]["dagster"]["ingressNamespace"]
    if env == "production":
        assert ingress_namespace
        assert pr.admitted(peers, {"app.kubernetes.io/name": "ingress-nginx"}, ingress_namespace)
    else:
        assert ingress_namespace == "", "kind: port-forward only"
        assert peers == []


def test_the_namespace_enforces_the_restricted_profile_before_any_release() -> None:
    namespace = pr.load_yaml(pr.NAMESPACE_MANIFEST)
    assert namespace["kind"] == "Namespace" and namespace["metadata"]["name"] == pr.NAMESPACE
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    plan = deploy.deploy_plan(
        pr.releases("production"), {}, {r.name: pr.REPO_ROOT for r in pr.releases("production")}
    )
    assert plan[0].command == ("kubectl", "apply", "-f", str(pr.NAMESPACE_MANIFEST))
    config = pr.load_yaml(pr.REPO_ROOT / "skaffold.yaml")
    (hook,) = config["deploy"]["helm"]["hooks"]["before"]
    assert "apply -f charts/namespace.yaml" in " ".join(hook["host"]["command"])
    for release in config["deploy"]["helm"]["releases"]:
        assert release["namespace"] == pr.NAMESPACE


def every_pod(env: str) -> list[pr.Manifest]:
    objects = list(k8s_cache.all_rendered(env)) + list(run_jobs(env).values())
    system = k8s_cache.release(env, pr.SYSTEM_RELEASE)
    objects += [o for o in pr.render(system, {"migrate": {"enabled": True}}) if o["kind"] == "Job"]
    return [o for o in objects if pr.pod_template(o) is not None]


@pytest.mark.parametrize("env", pr.ENVIRONMENTS)
def test_every_rendered_pod_satisfies_the_restricted_profile(env: str) -> None:
    pods = every_pod(env)
    kinds = {o["kind"] for o in pods}
    assert {"Deployment", "StatefulSet", "Job"} <= kinds
    problems = [p for o in pods for p in pr.restricted_violations(o)]
    assert problems == []


def with_pod_spec(obj: pr.Manifest, **changes: Any) -> pr.Manifest:
    template = obj["spec"]["template"]
    return {
        **obj,
        "spec": {**obj["spec"], "template": {**template, "spec": {**template["spec"], **changes}}},
    }


def test_the_restricted_check_catches_what_admission_refuses() -> None:
    (postgres,) = [o for o in every_pod("production") if pr.describe(o) == "StatefulSet/postgres"]
    spec = postgres["spec"]["template"]["spec"]
    assert pr.restricted_violations(postgres) == []
    host_path = {"name": "host", "hostPath": {"path": "/"}}
    assert pr.restricted_violations(with_pod_spec(postgres, hostNetwork=True))
    assert pr.restricted_violations(with_pod_spec(postgres, volumes=[*spec["volumes"], host_path]))
    container = spec["containers"][0]
    for change in (
        {"runAsNonRoot": False},
        {"runAsUser": 0},
        {"allowPrivilegeEscalation": True},
        {"seccompProfile": {"type": "Unconfined"}},
        {"capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN"]}},
        {"privileged": True},
    ):
        changed = {**container, "securityContext": {**container["securityContext"], **change}}
        assert pr.restricted_violations(with_pod_spec(postgres, containers=[changed])), change
