"""Reference integrity: every Kubernetes object named outside the charts (skaffold's port-forward,
the kind end-to-end run, kubectl commands in README.md and UPGRADE.md) and every reference
between rendered objects (NetworkPolicy selectors, Secret and ConfigMap references of pods and
run pods) points at an object the releases render, of the right kind. A guessed name such as
`dagster-webserver` fails here."""

from __future__ import annotations

import re
from functools import cache

import k8s_cache
import pytest
from data_platform_dev.releases import core as pr

KIND_ALIASES = {
    "deployment": "Deployment",
    "deploy": "Deployment",
    "service": "Service",
    "svc": "Service",
    "job": "Job",
    "secret": "Secret",
    "configmap": "ConfigMap",
    "cm": "ConfigMap",
    "statefulset": "StatefulSet",
    "sts": "StatefulSet",
    "pod": "Pod",
}
DOCUMENTS = ("README.md", "charts/dagster-system/UPGRADE.md")


@cache
def migrate_job() -> tuple[pr.Manifest, ...]:
    """The chart's instance-migrate Job, rendered as UPGRADE.md renders it (migrate.enabled)."""
    release = k8s_cache.release("production", pr.SYSTEM_RELEASE)
    objects = pr.render(release, {"migrate": {"enabled": True}})
    return tuple(o for o in objects if o["kind"] == "Job")


@cache
def run_jobs(env: str) -> tuple[pr.Manifest, ...]:
    """The run Job of each location, from the rendered instance config and container context."""
    launcher = pr.instance_launcher_config(k8s_cache.rendered(env, pr.SYSTEM_RELEASE))
    jobs = []
    for location in pr.locations():
        context = pr.rendered_container_context(k8s_cache.rendered(env, location.deployment))
        jobs.append(pr.build_run_job(launcher, context, f"{location.image}:x", location.name))
    return tuple(jobs)


def everything(env: str) -> tuple[pr.Manifest, ...]:
    return k8s_cache.all_rendered(env) + run_jobs(env) + migrate_job()


def index(env: str) -> set[tuple[str, str]]:
    return {(o["kind"], o["metadata"]["name"]) for o in everything(env)}


def production_secrets() -> set[str]:
    """Production renders no Secret: the names it expects are the existingSecret values."""
    values = pr.load_yaml(pr.STORES_CHART_DIR / "values-production.yaml")
    defaults = pr.load_yaml(pr.STORES_CHART_DIR / "values.yaml")
    secrets = pr.deep_merge(defaults, values)["secrets"]
    return {role["existingSecret"] for role in secrets.values() if isinstance(role, dict)}


def kubectl_references(text: str) -> list[tuple[str, str, str]]:
    """(kind, name, line) for every object a kubectl command in `text` names."""
    found = []
    lines = text.replace("\\\n", " ").splitlines()
    for line in lines:
        if "kubectl" not in line:
            continue
        command = line[line.index("kubectl") :]
        for kind, name in re.findall(r"\b([a-z]+)/([a-z0-9][a-z0-9.-]*)", command):
            if kind in KIND_ALIASES:
                found.append((KIND_ALIASES[kind], name, line.strip()))
        for name in re.findall(r"create secret generic ([a-z0-9][a-z0-9.-]*)", command):
            found.append(("Secret", name, line.strip()))
        match = re.search(
            r"\b(?:scale|delete|get|describe|rollout restart|logs)\s+([a-z]+)\s+((?:[a-z0-9][a-z0-9.-]*\s*)+)",
            command,
        )
        if match and match.group(1) in KIND_ALIASES:
            for name in match.group(2).split():
                found.append((KIND_ALIASES[match.group(1)], name, line.strip()))
    return found


def test_the_kubectl_parser_finds_what_the_runbook_names() -> None:
    text = "kubectl -n $NS scale deployment a-b c --replicas=0\nkubectl logs job/x-y"
    assert kubectl_references(text) == [
        ("Deployment", "a-b", "kubectl -n $NS scale deployment a-b c --replicas=0"),
        ("Deployment", "c", "kubectl -n $NS scale deployment a-b c --replicas=0"),
        ("Job", "x-y", "kubectl logs job/x-y"),
    ]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_kubectl_commands_in_the_docs_name_rendered_objects(document: str) -> None:
    references = kubectl_references((pr.REPO_ROOT / document).read_text())
    assert references, f"{document}: no kubectl command found (did the parser break?)"
    rendered = index("dev") | index("production")
    missing = [
        f"{kind}/{name} in `{line}`"
        for kind, name, line in references
        if (kind, name) not in rendered and not (kind == "Secret" and name in production_secrets())
    ]
    assert missing == []


def test_skaffold_forwards_the_rendered_webserver_service() -> None:
    config = pr.load_yaml(pr.REPO_ROOT / "skaffold.yaml")
    rendered = index("dev")
    for forward in config["portForward"]:
        kind = KIND_ALIASES[forward["resourceType"].lower()]
        assert (kind, forward["resourceName"]) in rendered, forward
        assert forward["namespace"] == pr.NAMESPACE
    name, port = pr.webserver_service(k8s_cache.rendered("dev", pr.SYSTEM_RELEASE))
    assert (name, port) == ("dagster-dagster-webserver", 3000)
    assert ("Deployment", name) in rendered
    assert {(f["resourceName"], f["port"]) for f in config["portForward"]} == {(name, port)}


def test_the_kind_run_and_the_deploy_script_name_no_object_by_hand() -> None:
    """kind_e2e and the deploy script take object names from the rendered releases; a literal
    `svc/<name>` or `deployment/<name>` in them would bypass this test."""
    for path in ("tests/e2e/kind_e2e.py", *pr_modules()):
        text = (pr.REPO_ROOT / path).read_text()
        literals = re.findall(r"[\"'](?:svc|service|deployment|job|secret)/[a-z0-9-]+[\"']", text)
        assert literals == [], path
    assert "pr.webserver_service(" in (pr.REPO_ROOT / "tests/e2e/kind_e2e.py").read_text()


def pr_modules() -> list[str]:
    folder = pr.REPO_ROOT / "code_locations/data_platform_dev/src/data_platform_dev/releases"
    return [str(p.relative_to(pr.REPO_ROOT)) for p in sorted(folder.glob("*.py"))]


def all_pods(env: str) -> list[tuple[str, dict[str, str]]]:
    return pr.pods(everything(env))


def consumer_labels() -> set[str]:
    """Labels that applications outside the platform carry to reach it (the feature server's
    clients): no rendered pod has them, by design."""
    defaults = pr.load_yaml(pr.STORES_CHART_DIR / "values.yaml")
    return {defaults["featureServer"]["clientLabel"]}


@pytest.mark.parametrize("env", pr.ENVIRONMENTS)
def test_every_network_policy_selector_matches_a_rendered_pod(env: str) -> None:
    pods = all_pods(env)
    outside = consumer_labels()
    unmatched = []
    for obj in everything(env):
        if obj["kind"] != "NetworkPolicy":
            continue
        spec = obj["spec"]
        selectors = [("podSelector", spec.get("podSelector") or {})]
        for direction in ("ingress", "egress"):
            for rule in spec.get(direction) or []:
                for peer in rule.get("from") or rule.get("to") or []:
                    if "podSelector" in peer and "namespaceSelector" not in peer:
                        selectors.append((f"{direction} peer", peer["podSelector"]))
        for where, selector in selectors:
            if set(selector.get("matchLabels") or {}) & outside:
                continue
            if not any(pr.selector_matches(selector, labels) for _, labels in pods):
                unmatched.append(f"{pr.describe(obj)} {where} {selector}")
    assert unmatched == []


def pod_references(obj: pr.Manifest) -> list[tuple[str, str]]:
    """(kind, name) of every Secret and ConfigMap a pod template uses."""
    template = pr.pod_template(obj)
    if template is None:
        return []
    found: list[tuple[str, str]] = []
    for volume in template[1].get("volumes") or []:
        if "secret" in volume:
            found.append(("Secret", volume["secret"]["secretName"]))
        if "configMap" in volume:
            found.append(("ConfigMap", volume["configMap"]["name"]))
    for _, container in pr.containers(template[1]):
        for source in container.get("envFrom") or []:
            for key, kind in (("secretRef", "Secret"), ("configMapRef", "ConfigMap")):
                if key in source and not source[key].get("optional"):
                    found.append((kind, source[key]["name"]))
        for variable in container.get("env") or []:
            for key, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
                ref = (variable.get("valueFrom") or {}).get(key)
                if ref and not ref.get("optional"):
                    found.append((kind, ref["name"]))
    return found


@pytest.mark.parametrize("env", pr.ENVIRONMENTS)
def test_every_secret_and_configmap_a_pod_uses_is_rendered(env: str) -> None:
    rendered = index(env)
    expected_secrets = production_secrets() if env == "production" else set()
    missing: list[str] = []
    for obj in everything(env):
        for kind, name in pod_references(obj):
            if (kind, name) in rendered or (kind == "Secret" and name in expected_secrets):
                continue
            missing.append(f"{pr.describe(obj)} uses {kind}/{name}")
    assert missing == []


def test_a_guessed_name_is_reported() -> None:
    references = kubectl_references("kubectl -n x scale deployment dagster-webserver --replicas=0")
    rendered = index("dev")
    assert [(k, n) for k, n, _ in references if (k, n) not in rendered] == [
        ("Deployment", "dagster-webserver")
    ]
