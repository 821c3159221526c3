"""Day-2 upgrades at the render level: `make deploy` migrates the instance before a Dagster
version bump, deploys by digest and atomically, keeps image tags strings, offers imagePullSecrets
in every release and bounds the run time.

The deploy tests run the real `make deploy` entry point (deploy.main) with only the helm and
kubectl processes replaced by a recorder: object names, values and the plan are the real ones."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import k8s_cache
import pytest
import yaml
from data_platform_dev.releases import core as pr
from data_platform_dev.releases import deploy

pytestmark = pytest.mark.skipif(
    not k8s_cache.official_charts_present(), reason=k8s_cache.MISSING_CHARTS
)

DIGEST = "sha256:" + "ab" * 32


class FakeCli:
    """Stands in for the helm and kubectl processes only (subprocess.run); records each call.
    `helm list` answers with the system release installed at `deployed_version`."""

    def __init__(self, deployed_version: str | None) -> None:
        self.deployed_version = deployed_version
        self.calls: list[list[str]] = []

    def run(self, command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        command = [str(part) for part in command]
        self.calls.append(command)
        stdout = ""
        if command[1] == "list" and self.deployed_version:
            name = command[command.index("--filter") + 1].strip("^$")
            chart = pr.SYSTEM_CHART if name == pr.SYSTEM_RELEASE else pr.LOCATION_CHART
            stdout = json.dumps([{"name": name, "chart": f"{chart}-{self.deployed_version}"}])
        if command[1] == "template":
            stdout = "kind: Job\n"
        return subprocess.CompletedProcess(command, 0, stdout, "")


def run_deploy(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, deployed_version: str | None
) -> list[list[str]]:
    cli = FakeCli(deployed_version)
    # only the deploy module's view of the processes: rendering (core) stays real
    monkeypatch.setattr(deploy, "subprocess", SimpleNamespace(run=cli.run))
    monkeypatch.setattr(deploy, "shutil", SimpleNamespace(which=lambda name: name))
    images = tmp_path / "images.json"
    images.write_text(
        json.dumps(
            {
                "builds": [
                    {"imageName": b.image, "tag": f"registry.example/{b.image}:1234567@{DIGEST}"}
                    for b in pr.image_builds("production")
                ]
            }
        )
    )
    assert deploy.main(["--images", str(images)]) == 0
    return [call for call in cli.calls if call[1] != "list"]


def rendered_system_names() -> tuple[str, str, str]:
    """Webserver and daemon Deployments and the migrate Job, read here from the render."""
    release = k8s_cache.release("production", pr.SYSTEM_RELEASE)
    objects = pr.render(release, {"migrate": {"enabled": True}})
    by_component = {
        o["metadata"]["labels"].get("component"): o["metadata"]["name"]
        for o in objects
        if o["kind"] == "Deployment"
    }
    (job,) = [o["metadata"]["name"] for o in objects if o["kind"] == "Job"]
    return by_component["dagster-webserver"], by_component["dagster-daemon"], job


def position(calls: list[list[str]], *words: str) -> int:
    matches = [i for i, call in enumerate(calls) if all(w in call for w in words)]
    assert len(matches) == 1, f"expected one call with {words}, found {len(matches)}: {calls}"
    return matches[0]


def test_version_bump_scales_down_then_migrates_then_upgrades(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls = run_deploy(monkeypatch, tmp_path, deployed_version="1.13.26")
    webserver, daemon, job = rendered_system_names()
    scale = position(calls, "scale", webserver, daemon, "--replicas=0")
    namespace = position(calls, "apply", str(pr.NAMESPACE_MANIFEST))
    (apply,) = [i for i, c in enumerate(calls) if "apply" in c and c[-1].endswith("migrate.yaml")]
    wait = position(calls, "wait", "--for=condition=complete", f"job/{job}")
    upgrade = position(calls, "upgrade", pr.SYSTEM_RELEASE, pr.SYSTEM_CHART)
    stores = position(calls, "upgrade", pr.STORES_RELEASE)
    assert namespace < stores < scale < apply < wait < upgrade
    # the pods are gone before the migration starts, for both Deployments
    gone = [i for i, c in enumerate(calls) if "--for=delete" in c]
    assert len(gone) == 2 and all(scale < i < apply for i in gone)
    # the Job applied is the chart's own, rendered at the target version with migrate enabled
    template = calls[position(calls, "template")]
    assert "migrate.enabled=true" in template and deploy.MIGRATE_TEMPLATE in template
    assert template[template.index("--version") + 1] == pr.DAGSTER_CHART_VERSION
    # the location releases follow the system release
    for location in pr.locations():
        assert position(calls, "upgrade", location.deployment) > upgrade


def test_same_version_deploy_does_not_stop_the_ui(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for deployed in (pr.DAGSTER_CHART_VERSION, None):
        calls = run_deploy(monkeypatch, tmp_path, deployed_version=deployed)
        assert calls[0] == ["kubectl", "apply", "-f", str(pr.NAMESPACE_MANIFEST)]
        calls = calls[1:]
        assert all(call[0] == "helm" and call[1] == "upgrade" for call in calls), calls
        assert len(calls) == len(pr.releases("production"))


def test_every_upgrade_is_atomic_and_deploys_images_by_digest(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    values_seen: dict[str, dict[str, Any]] = {}
    real_upgrade = deploy.helm_upgrade_command

    def capture(helm: str, release: pr.Release, values_path: Path) -> list[str]:
        values_seen[release.name] = yaml.safe_load(values_path.read_text())
        return real_upgrade(helm, release, values_path)

    monkeypatch.setattr(deploy, "helm_upgrade_command", capture)
    calls = run_deploy(monkeypatch, tmp_path, deployed_version=None)
    upgrades = [call for call in calls if call[:2] == ["helm", "upgrade"]]
    assert len(upgrades) == len(pr.releases("production"))
    for call in upgrades:
        assert "--atomic" in call, call
    for location in pr.locations():
        values = values_seen[location.deployment]
        release = pr.Release(location.deployment, pr.LOCATION_CHART, (), values)
        images = [
            c["image"]
            for o in pr.render(release)
            if (t := pr.pod_template(o))
            for _, c in pr.containers(t[1])
        ]
        assert images and all(i.endswith(f":1234567@{DIGEST}") for i in images), images
    stores = pr.Release(pr.STORES_RELEASE, "data-platform-stores", (), values_seen["stores"])
    feature = [
        c["image"]
        for o in pr.render(stores)
        if o["kind"] == "Deployment" and o["metadata"]["name"] == "feast-feature-server"
        for c in o["spec"]["template"]["spec"]["containers"]
    ]
    assert feature == [f"registry.example/data-platform/feature-store:1234567@{DIGEST}"]


def test_all_digit_tags_stay_strings() -> None:
    images = {"data-platform/ingestion": "r.example/data-platform/ingestion:0123456"}
    override = pr.image_overrides(images, "data-platform/ingestion")
    assert override["tag"] == "0123456"
    assert yaml.safe_load(yaml.safe_dump(override))["tag"] == "0123456"
    # our chart refuses a number (it would print 123456 or fail late), and renders the string
    stores = k8s_cache.release("production", pr.STORES_RELEASE)
    with pytest.raises(Exception, match="tag"):
        pr.render(stores, {"featureServer": {"image": {"tag": 1234567}}})
    objects = pr.render(stores, {"featureServer": {"image": {"tag": "0123456"}}})
    assert any(
        c["image"].endswith(":0123456")
        for o in objects
        if o["kind"] == "Deployment"
        for c in o["spec"]["template"]["spec"]["containers"]
    )
    # skaffold's production tags (`--set` of a commit hash) carry a non-digit prefix
    config = pr.load_yaml(pr.REPO_ROOT / "skaffold.yaml")
    (production,) = [p for p in config["profiles"] if p["name"] == "production"]
    (tag_policy,) = [p["value"] for p in production["patches"] if p["path"] == "/build/tagPolicy"]
    assert not tag_policy["gitCommit"]["prefix"][0].isdigit()
    for env in pr.ENVIRONMENTS:
        for release in pr.releases(env):
            for path, value in image_tags(release.values()):
                assert isinstance(value, str), f"{release.name} {path}: tag {value!r}"


def image_tags(values: Any, path: str = "") -> list[tuple[str, Any]]:
    found = []
    if isinstance(values, dict):
        if "repository" in values and "tag" in values:
            found.append((path, values["tag"]))
        for key, value in values.items():
            found += image_tags(value, f"{path}.{key}")
    elif isinstance(values, list):
        for index, value in enumerate(values):
            found += image_tags(value, f"{path}[{index}]")
    return found


@pytest.mark.parametrize("env", pr.ENVIRONMENTS)
def test_every_release_takes_image_pull_secrets(env: str) -> None:
    """One value per release puts registry credentials on every pod it renders, run pods too."""
    pull = [{"name": "registry-credentials"}]
    pods = 0
    for release in pr.releases(env):
        objects = pr.render(release, {"imagePullSecrets": pull})
        if release.chart == pr.SYSTEM_CHART:
            objects += pr.render(release, {"imagePullSecrets": pull, "migrate": {"enabled": True}})
        for obj in objects:
            template = pr.pod_template(obj)
            if template is not None:
                pods += 1
                assert template[1].get("imagePullSecrets") == pull, pr.describe(obj)
        if release.chart == pr.LOCATION_CHART:
            context = pr.rendered_container_context(objects)
            assert context["k8s"]["image_pull_secrets"] == pull, release.name
        documented = release.values()
        if not release.official:  # our chart documents it in its own values.yaml
            documented = pr.load_yaml(pr.STORES_CHART_DIR / "values.yaml")
        assert "imagePullSecrets" in documented, f"{release.name}: no documented option"
    assert pods >= 7


def test_runs_have_a_maximum_run_time() -> None:
    """The rendered dagster.yaml sets max_runtime_seconds under the one run_monitoring key, and
    Dagster's own instance schema accepts it."""
    from dagster._config import validate_config
    from dagster._core.instance.config import dagster_instance_config_schema

    for env in pr.ENVIRONMENTS:
        (configmap,) = [
            o
            for o in k8s_cache.rendered(env, pr.SYSTEM_RELEASE)
            if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-instance")
        ]
        text = configmap["data"]["dagster.yaml"]
        assert text.count("\nrun_monitoring:") == 1, "a second key would shadow the first"
        instance = yaml.safe_load(text)
        assert 0 < instance["run_monitoring"]["max_runtime_seconds"] <= 24 * 3600
        assert instance["run_monitoring"]["enabled"] is True
        result = validate_config(dagster_instance_config_schema(), instance)
        assert result.success, [e.message for e in result.errors]
