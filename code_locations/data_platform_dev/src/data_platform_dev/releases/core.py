"""The platform's Helm releases, rendered offline: one place that knows every release, its chart
and its values, shared by `make render`, `make chart-deps`, `make deploy`, the kind end-to-end
run and the tests in tests/kubernetes.

Rendering uses the real Helm engine: the `helm` binary when it is on PATH, else helm-python-sdk
(Helm's Go SDK in a wheel). The official Dagster charts come from charts/dagster-system/charts/
when `make chart-deps` fetched the pinned version, else from the official 1.9.4 packages kept in
shared/reference beside the repository (the newest reachable offline). Their values schemas
`$ref` Kubernetes definitions on the network, so a scratch copy with those references dropped
is rendered instead (offline, Helm would fail to load them).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


def _repository_root() -> Path:
    """The checkout this package is installed from (editable, as `make install` does)."""
    for candidate in Path(__file__).resolve().parents:
        if (candidate / "charts").is_dir() and (candidate / "code_locations").is_dir():
            return candidate
    raise RuntimeError(f"{__file__} is not inside the data platform repository")


REPO_ROOT = _repository_root()
NAMESPACE = "data-platform"
KUBERNETES_VERSIONS = ("1.29", "1.33")

DAGSTER_CHART_VERSION = "1.13.27"
# The official packages reachable offline (shared/reference/dagster-helm-chart/packages/).
REFERENCE_CHART_VERSION = "1.9.4"
DAGSTER_HELM_REPO = "https://dagster-io.github.io/helm"
SYSTEM_CHART = "dagster"
LOCATION_CHART = "dagster-user-deployments"
OFFICIAL_CHARTS = (SYSTEM_CHART, LOCATION_CHART)

STORES_CHART_DIR = REPO_ROOT / "charts" / "data-platform-stores"
SYSTEM_VALUES_DIR = REPO_ROOT / "charts" / "dagster-system"
VENDOR_DIR = SYSTEM_VALUES_DIR / "charts"  # git-ignored: `make chart-deps` fills it
STORES_RELEASE = "stores"
SYSTEM_RELEASE = "dagster"
ENVIRONMENTS = ("dev", "production")
# The synthetic upstream's image (images/dev-upstream): built and deployed for kind only.
DEV_UPSTREAM_IMAGE = "data-platform/dev-upstream"

# The keys every platform Secret must hold (the stores chart generates them for development;
# in production whoever owns secrets creates them under the names in values-production.yaml).
SECRET_KEYS: dict[str, tuple[str, ...]] = {
    "credentials": ("POSTGRES_PASSWORD", "REDIS_PASSWORD"),
    "dagsterPostgres": ("postgresql-password",),
    "postgresAdmin": ("postgres-password",),
    "exportS3": ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
    "computeLogsS3": ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
    "backupS3": ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
    # one per code location (its team's Postgres role); the feature store also reads Redis
    "ingestionCredentials": ("POSTGRES_PASSWORD",),
    "transformationCredentials": ("POSTGRES_PASSWORD",),
    "featureStoreCredentials": ("POSTGRES_PASSWORD", "REDIS_PASSWORD"),
}

Manifest = dict[str, Any]


# --------------------------------------------------------------------------------------------
# Values


def load_yaml(path: Path) -> Any:
    with path.open() as handle:
        return yaml.safe_load(handle)


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's coalescing of values files: maps merge, everything else (lists too) is replaced."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def merge_values_files(paths: Iterable[Path]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for path in paths:
        merged = deep_merge(merged, load_yaml(path) or {})
    return merged


def location_values_path(package: str) -> Path:
    """A team's release values live next to its code."""
    return REPO_ROOT / "code_locations" / package / "deploy" / "values.yaml"


def locations() -> tuple[Any, ...]:
    """The registry (data_platform.locations): every consumer of the location list reads it."""
    from data_platform.locations import LOCATIONS

    return LOCATIONS


# --------------------------------------------------------------------------------------------
# Releases


@dataclass(frozen=True)
class Release:
    name: str
    chart: str  # "data-platform-stores" or one of OFFICIAL_CHARTS
    values_files: tuple[Path, ...]
    set_values: Mapping[str, Any] = field(default_factory=dict)
    namespace: str = NAMESPACE

    @property
    def official(self) -> bool:
        return self.chart in OFFICIAL_CHARTS

    def values(self) -> dict[str, Any]:
        return deep_merge(merge_values_files(self.values_files), self.set_values)


def image_overrides(
    images: Mapping[str, str] | None, repository: str, *, chart: str = "official"
) -> dict[str, str]:
    """`images` maps an image repository (data-platform/ingestion) to the reference it was built
    as (registry/data-platform/ingestion:tag@sha256:...); returns the image values, tag always a
    string. The digest is kept: pods pull IfNotPresent, so a reused tag would run stale code.
    Our chart takes it as `digest`; the official charts print `repository:tag`, so there the
    digest rides in the tag (`tag@sha256:...`, a valid reference)."""
    if not images or repository not in images:
        return {}
    reference, _, digest = images[repository].partition("@")
    slash = reference.rfind("/")
    colon = reference.rfind(":")
    if colon <= slash:
        raise ValueError(f"image {images[repository]!r} has no tag: deploy tagged images")
    values = {"repository": reference[:colon], "tag": str(reference[colon + 1 :])}
    if digest:
        if chart == "stores":
            values["digest"] = digest
        else:
            values["tag"] = f"{values['tag']}@{digest}"
    return values


def releases(env: str = "dev", images: Mapping[str, str] | None = None) -> list[Release]:
    """Every release in deployment order: our stores chart, the Dagster system release, then one
    dagster-user-deployments release per code location."""
    if env not in ENVIRONMENTS:
        raise ValueError(f"unknown environment {env!r}; expected one of {ENVIRONMENTS}")
    stores_set: dict[str, Any] = {}
    feature_image = image_overrides(images, "data-platform/feature-store", chart="stores")
    upstream_image = image_overrides(images, DEV_UPSTREAM_IMAGE, chart="stores")
    if feature_image:
        stores_set["featureServer"] = {"image": feature_image}
    if upstream_image and env == "dev":
        stores_set["journalApi"] = {"image": upstream_image}
    system_files = [SYSTEM_VALUES_DIR / "values.yaml"]
    if env == "dev":
        system_files.append(SYSTEM_VALUES_DIR / "values-dev.yaml")
    result = [
        Release(
            STORES_RELEASE,
            "data-platform-stores",
            (STORES_CHART_DIR / f"values-{env}.yaml",),
            stores_set,
        ),
        Release(SYSTEM_RELEASE, SYSTEM_CHART, tuple(system_files)),
    ]
    kind_settings = skaffold_set_values() if env == "dev" else {}
    for location in locations():
        path = location_values_path(location.package)
        set_values: dict[str, Any] = {}
        override = image_overrides(images, location.image)
        settings = kind_settings.get(location.deployment) or {}
        if override or settings:
            deployments = copy.deepcopy(load_yaml(path)["deployments"])
            deployments[0]["image"].update(override)
            container = {"deployments": deployments}
            for dotted, value in settings.items():
                set_path(container, dotted, value)
            set_values["deployments"] = deployments
        result.append(Release(location.deployment, LOCATION_CHART, (path,), set_values))
    return result


def skaffold_set_values() -> dict[str, dict[str, Any]]:
    """The kind profile's `setValues` per release (skaffold.yaml is where the kind profile
    lives; `make render`, the tests and skaffold then agree)."""
    config = load_yaml(REPO_ROOT / "skaffold.yaml")
    return {
        release["name"]: dict(release.get("setValues") or {})
        for release in config["deploy"]["helm"]["releases"]
    }


def set_path(values: dict[str, Any], dotted: str, value: Any) -> None:
    """Helm's `--set a.b[0].c=v` into existing values (list items are updated, not replaced)."""
    node: Any = values
    parts = [p for p in re.split(r"\.|\[(\d+)\]", dotted) if p]
    for index, part in enumerate(parts):
        key: Any = int(part) if part.isdigit() else part
        last = index == len(parts) - 1
        if last:
            node[key] = value
        else:
            if isinstance(node, dict) and key not in node:
                node[key] = {}
            node = node[key]


# --------------------------------------------------------------------------------------------
# Images: one Dockerfile, one target per image


DOCKERFILE = REPO_ROOT / "images" / "Dockerfile"


@dataclass(frozen=True)
class ImageBuild:
    image: str  # repository, as in skaffold.yaml and the values files
    target: str  # the Dockerfile stage
    package: str  # the uv workspace package installed (build argument PACKAGE)
    source: str  # its folder under code_locations/ (build argument SOURCE)

    @property
    def build_args(self) -> dict[str, str]:
        return {"PACKAGE": self.package, "SOURCE": self.source}


def image_builds(env: str = "dev") -> list[ImageBuild]:
    """The images an environment deploys: a location's image per location, plus the synthetic
    upstream in development."""
    builds = [
        ImageBuild(loc.image, loc.deployment, f"location-{loc.deployment}", loc.package)
        for loc in locations()
    ]
    if env == "dev":
        builds.append(
            ImageBuild(DEV_UPSTREAM_IMAGE, "dev-upstream", "data-platform-dev", "data_platform_dev")
        )
    return builds


def dockerfile_stages() -> dict[str, tuple[str, str]]:
    """images/Dockerfile by stage name: (the stage it builds FROM, its text)."""
    stages: dict[str, tuple[str, str]] = {}
    name = None
    for line in DOCKERFILE.read_text().splitlines():
        match = re.match(r"^FROM (\S+) AS (\S+)$", line)
        if match:
            name = match.group(2)
            stages[name] = (match.group(1), f"{line}\n")
        elif name is not None:
            parent, text = stages[name]
            stages[name] = (parent, f"{text}{line}\n")
    return stages


def image_environment(target: str) -> dict[str, str]:
    """The ENV an image target sets (its own stage and the stages it builds on)."""
    stages = dockerfile_stages()
    chain = []
    while target in stages:
        chain.append(target)
        target = stages[target][0]
    env: dict[str, str] = {}
    for stage in reversed(chain):
        text = stages[stage][1].replace("\\\n", " ")
        for line in text.splitlines():
            if line.startswith("ENV "):
                for name, value in re.findall(r"(\w+)=(\S*)", line[4:]):
                    env[name] = value
    return env


# --------------------------------------------------------------------------------------------
# Charts


def reference_dir() -> Path | None:
    """shared/reference/dagster-helm-chart beside the repository: ../shared in CI (shared/ sits
    beside the clone), ../../shared from a worktree; $DAGSTER_CHART_SCHEMA_DIR overrides."""
    candidates = []
    if os.environ.get("DAGSTER_CHART_SCHEMA_DIR"):
        candidates.append(Path(os.environ["DAGSTER_CHART_SCHEMA_DIR"]))
    candidates += [
        REPO_ROOT / ".." / "shared" / "reference" / "dagster-helm-chart",
        REPO_ROOT / ".." / ".." / "shared" / "reference" / "dagster-helm-chart",
    ]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate.resolve()
    return None


def vendored_chart_archive(chart: str) -> Path | None:
    """The pinned version, when `make chart-deps` fetched it."""
    archive = VENDOR_DIR / f"{chart}-{DAGSTER_CHART_VERSION}.tgz"
    return archive if archive.is_file() else None


def official_chart_archive(chart: str) -> Path | None:
    """The pinned package when fetched, else the official reference package, else None."""
    archive = vendored_chart_archive(chart)
    if archive is not None:
        return archive
    directory = reference_dir()
    if directory is None:
        return None
    reference = directory / "packages" / f"{chart}-{REFERENCE_CHART_VERSION}.tgz"
    return reference if reference.is_file() else None


def official_chart_version(chart: str) -> str | None:
    """The version of the package the official releases render with (None: no package)."""
    archive = official_chart_archive(chart)
    if archive is None:
        return None
    return archive.name.removeprefix(f"{chart}-").removesuffix(".tgz")


def chart_version_for(release: Release) -> str:
    if not release.official:
        return str(load_yaml(STORES_CHART_DIR / "Chart.yaml")["version"])
    return official_chart_version(release.chart) or "missing"


def drop_remote_refs(schema: Any) -> Any:
    """Drop every `$ref` that points off the document (keep its sibling keywords): offline, the
    Kubernetes sub-shapes go unchecked but the chart's own shapes are still enforced."""
    if isinstance(schema, dict):
        return {
            key: drop_remote_refs(value)
            for key, value in schema.items()
            if not (key == "$ref" and isinstance(value, str) and not value.startswith("#"))
        }
    if isinstance(schema, list):
        return [drop_remote_refs(item) for item in schema]
    return schema


def _offline_cache_dir() -> Path:
    base = Path(os.environ.get("DATA_PLATFORM_CHART_CACHE", tempfile.gettempdir()))
    return base / f"data-platform-offline-charts-{os.getuid()}"


def offline_chart_dir(chart: str) -> Path | None:
    """The official chart unpacked with its values schemas made offline, or None when absent."""
    archive = official_chart_archive(chart)
    if archive is None:
        return None
    stamp = f"{archive.stat().st_size}-{int(archive.stat().st_mtime)}"
    target = _offline_cache_dir() / f"{archive.name.removesuffix('.tgz')}-{stamp}"
    chart_dir = target / chart
    if not chart_dir.is_dir():
        staging = Path(tempfile.mkdtemp(prefix=f"{chart}-", dir=_offline_cache_dir().parent))
        with tarfile.open(archive) as bundle:
            bundle.extractall(staging, filter="data")
        for schema_path in staging.rglob("values.schema.json"):
            schema = json.loads(schema_path.read_text())
            schema_path.write_text(json.dumps(drop_remote_refs(schema), indent=1))
        target.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):  # another process may have won the race
            (staging / chart).rename(chart_dir)
        shutil.rmtree(staging, ignore_errors=True)
    return chart_dir


def chart_dir_for(release: Release) -> Path | None:
    if release.official:
        return offline_chart_dir(release.chart)
    return STORES_CHART_DIR


# --------------------------------------------------------------------------------------------
# Rendering


class ChartMissing(RuntimeError):
    """The official chart is not here (`make chart-deps` fetches it where the network allows)."""


def helm_binary() -> str | None:
    return shutil.which("helm")


def engine_name() -> str:
    return "helm CLI" if helm_binary() else "helm-python-sdk"


def _render_with_cli(
    helm: str, chart_dir: Path, release: Release, values: Mapping[str, Any]
) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        yaml.safe_dump(dict(values), handle)
        values_path = handle.name
    try:
        completed = subprocess.run(
            [
                helm,
                "template",
                release.name,
                str(chart_dir),
                "--namespace",
                release.namespace,
                "--values",
                values_path,
                "--kube-version",
                f"v{KUBERNETES_VERSIONS[-1]}.0",
            ],
            check=False,
            capture_output=True,
            text=True,
        )
    finally:
        os.unlink(values_path)
    if completed.returncode != 0:
        raise RuntimeError(f"helm template {release.name} failed:\n{completed.stderr}")
    return completed.stdout


def _render_with_sdk(chart_dir: Path, release: Release, values: Mapping[str, Any]) -> str:
    import helm_python

    with helm_python.Chart.load(chart_dir) as chart:
        rendered = chart.render(
            dict(values), name=release.name, namespace=release.namespace, is_install=True
        )
    documents = [
        f"---\n# Source: {path}\n{text}"
        for path, text in sorted(rendered.items())
        if not path.endswith("NOTES.txt") and text.strip()
    ]
    return "\n".join(documents)


def render_text(release: Release, extra_values: Mapping[str, Any] | None = None) -> str:
    """The release as `helm template` prints it."""
    chart_dir = chart_dir_for(release)
    if chart_dir is None:
        raise ChartMissing(
            f"chart {release.chart}: neither {release.chart}-{DAGSTER_CHART_VERSION}.tgz in "
            f"{VENDOR_DIR} (`make chart-deps` where https://dagster-io.github.io/helm is "
            f"reachable) nor {release.chart}-{REFERENCE_CHART_VERSION}.tgz in "
            "../shared/reference/dagster-helm-chart/packages beside the repository"
        )
    values = deep_merge(release.values(), extra_values or {})
    helm = helm_binary()
    if helm:
        return _render_with_cli(helm, chart_dir, release, values)
    return _render_with_sdk(chart_dir, release, values)


def parse_manifests(text: str) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(text) if isinstance(doc, dict) and doc]


CLUSTER_SCOPED_KINDS = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "PersistentVolume",
    "StorageClass",
    "CustomResourceDefinition",
    "PriorityClass",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
}


def is_test_hook(obj: Mapping[str, Any]) -> bool:
    hooks = str(((obj.get("metadata") or {}).get("annotations") or {}).get("helm.sh/hook", ""))
    return "test" in [hook.strip() for hook in hooks.split(",")]


def render(release: Release, extra_values: Mapping[str, Any] | None = None) -> list[Manifest]:
    """The objects `helm upgrade --install -n <namespace>` would create. Namespaced objects get
    the release namespace (Helm adds it at install time); the official charts' own `helm test`
    pods are left out: we never run them (our chart's test hook stays)."""
    objects = []
    for obj in parse_manifests(render_text(release, extra_values)):
        if release.official and is_test_hook(obj):
            continue
        if obj.get("kind") not in CLUSTER_SCOPED_KINDS:
            obj.setdefault("metadata", {}).setdefault("namespace", release.namespace)
        objects.append(obj)
    return objects


def webserver_service(system_objects: Iterable[Manifest]) -> tuple[str, int]:
    """(name, port) of the webserver's Service as the system release renders it: the chart names
    it `<release>-<dagsterWebserver.nameOverride>`, never guess it."""
    for obj in system_objects:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if obj.get("kind") == "Service" and labels.get("component") == "dagster-webserver":
            return obj["metadata"]["name"], int(obj["spec"]["ports"][0]["port"])
    raise LookupError("no webserver Service (component: dagster-webserver) in the system release")


def config_data(
    objects: Iterable[Manifest],
) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]:
    """(ConfigMaps, Secrets) by name, Secret values decoded."""
    configmaps: dict[str, dict[str, str]] = {}
    secrets: dict[str, dict[str, str]] = {}
    for obj in objects:
        name = obj["metadata"]["name"]
        if obj.get("kind") == "ConfigMap":
            configmaps[name] = dict(obj.get("data") or {})
        elif obj.get("kind") == "Secret":
            data = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
            secrets[name] = {**data, **(obj.get("stringData") or {})}
    return configmaps, secrets


def container_environment(
    container: Mapping[str, Any],
    configmaps: Mapping[str, Mapping[str, str]],
    secrets: Mapping[str, Mapping[str, str]],
) -> dict[str, str]:
    """The variables Kubernetes gives a container: envFrom first, then env (which wins).
    A missing non-optional ConfigMap, Secret or key raises KeyError naming it."""
    sources = {"configMapRef": configmaps, "secretRef": secrets}
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        for key, known in sources.items():
            if key not in source:
                continue
            name = source[key]["name"]
            if name in known:
                env.update({f"{source.get('prefix', '')}{k}": v for k, v in known[name].items()})
            elif not source[key].get("optional"):
                raise KeyError(f"{container.get('name')}: envFrom {key} {name} does not exist")
    refs = {"configMapKeyRef": configmaps, "secretKeyRef": secrets}
    for variable in container.get("env") or []:
        if "value" in variable or "valueFrom" not in variable:
            env[variable["name"]] = str(variable.get("value", ""))
            continue
        for key, known in refs.items():
            ref = variable["valueFrom"].get(key)
            if ref is None:
                continue
            value = (known.get(ref["name"]) or {}).get(ref["key"])
            if value is not None:
                env[variable["name"]] = value
            elif not ref.get("optional"):
                raise KeyError(
                    f"{variable['name']}: {key} {ref['name']}/{ref['key']} does not exist"
                )
    return env


def dump_manifests(objects: Iterable[Manifest]) -> str:
    return "".join(f"---\n{yaml.safe_dump(obj, sort_keys=False)}" for obj in objects)


# --------------------------------------------------------------------------------------------
# Kubernetes schema validation


def schema_errors(objects: Iterable[Manifest], version: str) -> list[str]:
    """Strict kubernetes-validate over every object; one line per invalid object."""
    import kubernetes_validate

    errors = []
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            location = "/".join(str(part) for part in error.absolute_path)
            errors.append(
                f"{describe(obj)} (Kubernetes {version}) at {location or '/'}: {error.message}"
            )
        except (
            kubernetes_validate.SchemaNotFoundError,
            kubernetes_validate.InvalidSchemaError,
        ) as error:
            errors.append(f"{describe(obj)} (Kubernetes {version}): {error}")
    return errors


def describe(obj: Mapping[str, Any]) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


# --------------------------------------------------------------------------------------------
# Walking pod specs


WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}
LONG_RUNNING_KINDS = {"Deployment", "StatefulSet", "DaemonSet"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|API_KEY|PRIVATE_KEY", re.IGNORECASE)


def pod_template(obj: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(pod metadata, pod spec) of a workload, or None for other kinds."""
    kind = obj.get("kind")
    spec = obj.get("spec") or {}
    if kind == "Pod":
        return obj.get("metadata") or {}, spec
    if kind == "CronJob":
        template = spec["jobTemplate"]["spec"]["template"]
        return template.get("metadata") or {}, template["spec"]
    if kind in WORKLOAD_KINDS:
        template = spec["template"]
        return template.get("metadata") or {}, template["spec"]
    return None


def containers(pod_spec: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for section in ("initContainers", "containers"):
        for container in pod_spec.get(section) or []:
            yield section, container


def image_tag(image: str) -> str | None:
    """The tag of an image reference ("@<digest>" when pinned by digest only; None for neither)."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = last.partition(":")[2]
    if tag:
        return tag
    return f"@{digest}" if digest else None


def _effective(
    pod_security: Mapping[str, Any], container_security: Mapping[str, Any], key: str
) -> Any:
    if key in container_security:
        return container_security[key]
    return pod_security.get(key)


def _security_problems(
    where: str,
    pod_security: Mapping[str, Any],
    security: Mapping[str, Any],
    seccomp_types: tuple[str, ...],
) -> list[str]:
    """A container's security context (over its pod's): non-root, no escalation, no privilege,
    capabilities dropped (NET_BIND_SERVICE the only one added back), a seccomp profile."""
    problems = []
    if _effective(pod_security, security, "runAsNonRoot") is not True:
        problems.append(f"{where}: runAsNonRoot is not true")
    if _effective(pod_security, security, "runAsUser") == 0:
        problems.append(f"{where}: runs as uid 0")
    if security.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{where}: allowPrivilegeEscalation is not false")
    if security.get("privileged"):
        problems.append(f"{where}: privileged")
    capabilities = security.get("capabilities") or {}
    if "ALL" not in (capabilities.get("drop") or []):
        problems.append(f"{where}: capabilities do not drop ALL")
    if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
        problems.append(f"{where}: adds capabilities {capabilities['add']}")
    seccomp = _effective(pod_security, security, "seccompProfile") or {}
    if seccomp.get("type") not in seccomp_types:
        problems.append(f"{where}: seccompProfile {seccomp.get('type')!r} not in {seccomp_types}")
    return problems


def workload_violations(obj: Mapping[str, Any], *, read_only_root: bool = True) -> list[str]:
    """Probes, requests and limits, non-root, no :latest, no secret values inline."""
    template = pod_template(obj)
    if template is None:
        return []
    _, pod_spec = template
    name = describe(obj)
    problems = []
    pod_security = pod_spec.get("securityContext") or {}
    for section, container in containers(pod_spec):
        where = f"{name} {section[:-1]} {container.get('name')}"
        image = str(container.get("image", ""))
        tag = image_tag(image)
        if not tag:
            problems.append(f"{where}: image {image!r} has no tag or digest")
        elif tag == "latest":
            problems.append(f"{where}: image {image!r} uses :latest")
        resources = container.get("resources") or {}
        for kind in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if resource not in (resources.get(kind) or {}):
                    problems.append(
                        f"{where}: no {resource} {kind[:-1] if kind == 'limits' else 'request'}"
                    )
        security = container.get("securityContext") or {}
        problems += _security_problems(where, pod_security, security, ("RuntimeDefault",))
        if read_only_root and security.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{where}: root filesystem is writable")
        if section == "containers" and obj.get("kind") in LONG_RUNNING_KINDS:
            for probe in ("readinessProbe", "livenessProbe"):
                if not container.get(probe):
                    problems.append(f"{where}: no {probe}")
        for env in container.get("env") or []:
            variable = str(env.get("name", ""))
            if (
                SECRET_NAME.search(variable)
                and not variable.endswith(("_FILE", "_PATH"))
                and "value" in env
            ):
                problems.append(
                    f"{where}: secret-looking variable {env['name']} has an inline value"
                )
    return problems


def policy_violations(
    objects: Iterable[Manifest], *, allow_generated_secrets: bool, read_only_root: bool = True
) -> list[str]:
    """Every policy the platform holds its rendered objects to (see workload_violations)."""
    problems: list[str] = []
    for obj in objects:
        kind = obj.get("kind")
        problems.extend(workload_violations(obj, read_only_root=read_only_root))
        if (
            kind == "Secret"
            and (obj.get("data") or obj.get("stringData"))
            and not allow_generated_secrets
        ):
            problems.append(
                f"{describe(obj)}: Secret with inline values (production uses existingSecret)"
            )
        if kind == "Secret" and obj.get("stringData"):
            problems.append(f"{describe(obj)}: stringData keeps a readable value in the manifest")
        if kind == "ConfigMap":
            for key in obj.get("data") or {}:
                if SECRET_NAME.search(key) and not key.endswith((".yaml", ".yml", ".sh", ".conf")):
                    problems.append(f"{describe(obj)}: secret-looking key {key} in a ConfigMap")
        if kind == "Service" and (obj.get("spec") or {}).get("type", "ClusterIP") != "ClusterIP":
            problems.append(
                f"{describe(obj)}: Service type {obj['spec']['type']} is reachable from outside"
            )
    return problems


# --------------------------------------------------------------------------------------------
# Network reachability


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels and matchExpressions)."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = (
            expression["key"],
            expression["operator"],
            expression.get("values") or [],
        )
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def pods(objects: Iterable[Manifest]) -> list[tuple[str, dict[str, str]]]:
    """(workload description, pod labels) for every pod template."""
    found = []
    for obj in objects:
        template = pod_template(obj)
        if template is not None:
            labels = dict(template[0].get("labels") or {})
            if obj.get("kind") == "Job":
                labels.setdefault("batch.kubernetes.io/job-name", obj["metadata"]["name"])
            found.append((describe(obj), labels))
    return found


def ingress_peers(
    objects: Iterable[Manifest], target_labels: Mapping[str, str]
) -> list[dict[str, Any]] | None:
    """The `from` peers admitted to pods with `target_labels`, or None when no policy isolates
    them (then everything may connect)."""
    peers: list[dict[str, Any]] = []
    isolated = False
    for obj in objects:
        if obj.get("kind") != "NetworkPolicy":
            continue
        spec = obj.get("spec") or {}
        if "Ingress" not in (spec.get("policyTypes") or ["Ingress"]):
            continue
        if not selector_matches(spec.get("podSelector") or {}, target_labels):
            continue
        isolated = True
        for rule in spec.get("ingress") or []:
            peers.extend(rule.get("from") or [{"anywhere": True}])
    return peers if isolated else None


def admitted(
    peers: list[dict[str, Any]] | None,
    client_labels: Mapping[str, str],
    namespace: str = NAMESPACE,
) -> bool:
    """Whether a pod with `client_labels` in `namespace` (default: the platform's own) may
    connect. A namespace is matched by its `kubernetes.io/metadata.name` label, which
    Kubernetes sets on every namespace."""
    if peers is None:
        return True
    namespace_labels = {"kubernetes.io/metadata.name": namespace}
    for peer in peers:
        if "anywhere" in peer or "ipBlock" in peer:
            return True
        if "namespaceSelector" in peer:
            if not selector_matches(peer["namespaceSelector"], namespace_labels):
                continue
        elif namespace != NAMESPACE:
            continue  # a bare podSelector admits pods of the policy's own namespace only
        if selector_matches(peer.get("podSelector") or {}, client_labels):
            return True
    return False


# --------------------------------------------------------------------------------------------
# Pod Security Admission: the `restricted` profile
# (https://kubernetes.io/docs/concepts/security/pod-security-standards/#restricted)

NAMESPACE_MANIFEST = REPO_ROOT / "charts" / "namespace.yaml"
RESTRICTED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}


def restricted_violations(obj: Mapping[str, Any]) -> list[str]:
    """What Pod Security Admission would refuse in a namespace enforcing `restricted` (baseline
    checks included), for one workload's pod template."""
    template = pod_template(obj)
    if template is None:
        return []
    metadata, pod = template
    name = describe(obj)
    problems = [f"{name}: {key}" for key in ("hostNetwork", "hostPID", "hostIPC") if pod.get(key)]
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            problems.append(f"{name}: volume {volume['name']} of type {sorted(kinds)}")
    pod_security = pod.get("securityContext") or {}
    for sysctl in pod_security.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            problems.append(f"{name}: unsafe sysctl {sysctl.get('name')}")
    annotations = metadata.get("annotations") or {}
    for key, value in annotations.items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/") and not (
            value == "runtime/default" or value.startswith("localhost/")
        ):
            problems.append(f"{name}: AppArmor profile {value}")
    for section in ("initContainers", "containers", "ephemeralContainers"):
        for container in pod.get(section) or []:
            where = f"{name} {section[:-1]} {container.get('name')}"
            security = container.get("securityContext") or {}
            problems += _security_problems(
                where, pod_security, security, ("RuntimeDefault", "Localhost")
            )
            if security.get("procMount", "Default") != "Default":
                problems.append(f"{where}: procMount {security['procMount']}")
            if (security.get("seLinuxOptions") or {}).get("type") not in (
                None,
                "",
                "container_t",
                "container_init_t",
                "container_kvm_t",
                "container_engine_t",
            ):
                problems.append(f"{where}: SELinux type {security['seLinuxOptions']['type']}")
            for port in container.get("ports") or []:
                if port.get("hostPort"):
                    problems.append(f"{where}: hostPort {port['hostPort']}")
    return problems


# --------------------------------------------------------------------------------------------
# The run Job a location launches


def launcher_config_from_values(
    system_values: Mapping[str, Any], release: str = SYSTEM_RELEASE
) -> dict[str, Any]:
    """K8sRunLauncher config as the dagster chart writes it into dagster.yaml (its
    dagsterYaml.runLauncher.k8s template), from our system values."""
    launcher = system_values["runLauncher"]["config"]["k8sRunLauncher"]
    config: dict[str, Any] = {
        "load_incluster_config": launcher["loadInclusterConfig"],
        "job_namespace": launcher.get("jobNamespace") or NAMESPACE,
        "image_pull_policy": launcher["imagePullPolicy"],
        "service_account_name": (system_values.get("global") or {}).get("serviceAccountName")
        or release,
        "dagster_home": system_values["global"]["dagsterHome"],
        "instance_config_map": f"{release}-instance",
        "postgres_password_secret": system_values["global"]["postgresqlSecretName"],
    }
    renames = {
        "envConfigMaps": "env_config_maps",
        "envSecrets": "env_secrets",
        "envVars": "env_vars",
        "volumeMounts": "volume_mounts",
        "volumes": "volumes",
        "labels": "labels",
        "resources": "resources",
        "failPodOnRunFailure": "fail_pod_on_run_failure",
        "schedulerName": "scheduler_name",
        "securityContext": "security_context",
    }
    for key, target in renames.items():
        value = launcher.get(key)
        if not value:
            continue
        if key in ("envConfigMaps", "envSecrets"):
            value = [item["name"] for item in value if "name" in item]
        config[target] = value
    run_k8s = launcher.get("runK8sConfig") or {}
    sections = {
        "containerConfig": "container_config",
        "podSpecConfig": "pod_spec_config",
        "podTemplateSpecMetadata": "pod_template_spec_metadata",
        "jobSpecConfig": "job_spec_config",
        "jobMetadata": "job_metadata",
    }
    if run_k8s:
        config["run_k8s_config"] = {
            sections[key]: value for key, value in run_k8s.items() if value and key in sections
        }
    return config


def container_context_from_values(
    deployment: Mapping[str, Any], release: str, namespace: str = NAMESPACE
) -> dict[str, Any]:
    """The container context the dagster-user-deployments chart hands a code server (its
    dagsterUserDeployments.k8sContainerContext helper) when includeConfigInLaunchedRuns is on."""
    fullname = release if LOCATION_CHART in release else f"{release}-{LOCATION_CHART}"
    k8s: dict[str, Any] = {
        "image_pull_policy": deployment["image"]["pullPolicy"],
        "env_config_maps": [f"{fullname}-{deployment['name']}-user-env"]
        + [item["name"] for item in deployment.get("envConfigMaps") or [] if "name" in item],
        "namespace": namespace,
        "service_account_name": f"{fullname}-user-deployments",
        "run_k8s_config": {"pod_spec_config": {"automount_service_account_token": True}},
    }
    if deployment.get("envSecrets"):
        k8s["env_secrets"] = [item["name"] for item in deployment["envSecrets"] if "name" in item]
    for key, target in (
        ("volumeMounts", "volume_mounts"),
        ("volumes", "volumes"),
        ("labels", "labels"),
        ("resources", "resources"),
        ("schedulerName", "scheduler_name"),
    ):
        if deployment.get(key):
            k8s[target] = deployment[key]
    if isinstance(deployment.get("env"), list) and deployment["env"]:
        k8s["env"] = deployment["env"]
    return {"k8s": k8s}


def instance_launcher_config(system_objects: Iterable[Manifest]) -> dict[str, Any]:
    """The run launcher config out of the rendered instance ConfigMap (official chart present)."""
    for obj in system_objects:
        if obj.get("kind") == "ConfigMap" and obj["metadata"]["name"].endswith("-instance"):
            instance = yaml.safe_load(obj["data"]["dagster.yaml"])
            return dict(instance["run_launcher"]["config"])
    raise LookupError("no <release>-instance ConfigMap in the rendered system release")


def rendered_container_context(location_objects: Iterable[Manifest]) -> dict[str, Any]:
    """DAGSTER_CONTAINER_CONTEXT of the rendered code server Deployment (official chart present)."""
    for obj in location_objects:
        if obj.get("kind") != "Deployment":
            continue
        for container in obj["spec"]["template"]["spec"]["containers"]:
            for env in container.get("env") or []:
                if env["name"] in (
                    "DAGSTER_CONTAINER_CONTEXT",
                    "DAGSTER_CLI_API_GRPC_CONTAINER_CONTEXT",
                ):
                    return dict(json.loads(env["value"]))
    raise LookupError("no code server Deployment with a container context in the rendered release")


def validate_run_k8s_config(run_k8s_config: Mapping[str, Any]) -> None:
    """Dagster's own parser for run_k8s_config: unknown keys (typos) raise, as they would when the
    daemon launches the run. The chart's values schema lets them through."""
    from dagster_k8s.job import UserDefinedDagsterK8sConfig

    allowed = {
        "container_config",
        "pod_spec_config",
        "pod_template_spec_metadata",
        "job_config",
        "job_metadata",
        "job_spec_config",
        "merge_behavior",
    }
    unknown = set(run_k8s_config) - allowed
    if unknown:
        raise ValueError(
            f"run_k8s_config has unknown sections {sorted(unknown)}; allowed: {sorted(allowed)}"
        )
    UserDefinedDagsterK8sConfig.from_dict(dict(run_k8s_config))


def build_run_job(
    launcher_config: Mapping[str, Any],
    container_context: Mapping[str, Any],
    image: str,
    location_name: str,
    job_name: str = "ingest",
    args: list[str] | None = None,
    run_id: str = "00000000-0000-0000-0000-000000000000",
) -> Manifest:
    """The Kubernetes Job the K8sRunLauncher would create for a run of this location, built with
    dagster-k8s's own functions (K8sContainerContext merge + construct_dagster_k8s_job)."""
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import (
        DagsterK8sJobConfig,
        UserDefinedDagsterK8sConfig,
        construct_dagster_k8s_job,
    )
    from kubernetes.client import ApiClient

    validate_run_k8s_config(launcher_config.get("run_k8s_config") or {})
    launcher_context = K8sContainerContext(
        image_pull_policy=launcher_config.get("image_pull_policy"),
        image_pull_secrets=launcher_config.get("image_pull_secrets"),
        service_account_name=launcher_config.get("service_account_name"),
        env_config_maps=launcher_config.get("env_config_maps"),
        env_secrets=launcher_config.get("env_secrets"),
        env_vars=launcher_config.get("env_vars"),
        volume_mounts=launcher_config.get("volume_mounts"),
        volumes=launcher_config.get("volumes"),
        labels=launcher_config.get("labels"),
        namespace=launcher_config.get("job_namespace"),
        resources=launcher_config.get("resources"),
        scheduler_name=launcher_config.get("scheduler_name"),
        security_context=launcher_config.get("security_context"),
        run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(
            launcher_config.get("run_k8s_config") or {}
        ),
    )
    context = launcher_context.merge(
        K8sContainerContext.create_from_config(dict(container_context))
    )
    job_config = DagsterK8sJobConfig(
        job_image=image,
        dagster_home=launcher_config["dagster_home"],
        instance_config_map=launcher_config["instance_config_map"],
        postgres_password_secret=launcher_config.get("postgres_password_secret"),
    )
    job = construct_dagster_k8s_job(
        job_config=job_config,
        args=args or ["dagster", "api", "execute_run", "{}"],
        job_name=f"dagster-run-{run_id}",
        pod_name=f"dagster-run-{run_id}",
        user_defined_k8s_config=context.run_k8s_config,
        component="run_worker",
        labels={
            "dagster/job": job_name,
            "dagster/run-id": run_id,
            "dagster/code-location": location_name,
        },
        env_vars=[{"name": "DAGSTER_RUN_JOB_NAME", "value": job_name}],
    )
    manifest: Manifest = ApiClient().sanitize_for_serialization(job)
    manifest.setdefault("metadata", {})["namespace"] = context.namespace
    return manifest


# --------------------------------------------------------------------------------------------
# Official values schemas (reference copies, offline)


def reference_schema_dir() -> Path | None:
    """The official charts' values schemas (reference copies, newer than the 1.9.4 packages)."""
    directory = reference_dir()
    if directory is not None and (directory / "values.schema.json").is_file():
        return directory
    return None


def drop_required(schema: Any) -> Any:
    """For validating only the sections we set: without the chart's defaults at hand, the
    schema's `required` lists would demand keys that values.yaml normally provides."""
    if isinstance(schema, dict):
        return {key: drop_required(value) for key, value in schema.items() if key != "required"}
    if isinstance(schema, list):
        return [drop_required(item) for item in schema]
    return schema


def official_values_schema(chart: str) -> dict[str, Any] | None:
    """The chart's values schema, offline: from the fetched pinned chart when present, else from
    the reference copy (newer than the 1.9.4 packages). None when neither is available."""
    chart_dir = offline_chart_dir(chart) if vendored_chart_archive(chart) else None
    if chart_dir is not None and (chart_dir / "values.schema.json").is_file():
        return dict(json.loads((chart_dir / "values.schema.json").read_text()))
    directory = reference_schema_dir()
    if directory is None:
        return None
    name = "values.schema.json" if chart == SYSTEM_CHART else f"{LOCATION_CHART}.values.schema.json"
    return dict(drop_remote_refs(json.loads((directory / name).read_text())))


def values_schema_errors(
    chart: str, values: Mapping[str, Any], schema: Mapping[str, Any]
) -> list[str]:
    """Validate values the way Helm would: against the full schema merged with the chart's
    defaults when the chart is here, else the sections we set against a schema without
    `required`."""
    import jsonschema

    chart_dir = offline_chart_dir(chart) if vendored_chart_archive(chart) else None
    if chart_dir is not None:
        document = deep_merge(load_yaml(chart_dir / "values.yaml") or {}, values)
        checked = dict(schema)
    else:
        document = dict(values)
        checked = drop_required(schema)
    validator = jsonschema.Draft202012Validator(checked)
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '/'}: {error.message}"
        for error in sorted(
            validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path))
        )
    ]


# The keys a dagster-user-deployments `deployments[]` item may have (its schema accepts any).
USER_DEPLOYMENT_KEYS_FALLBACK = frozenset(
    {
        "name",
        "image",
        "dagsterApiGrpcArgs",
        "codeServerArgs",
        "includeConfigInLaunchedRuns",
        "deploymentNamespace",
        "port",
        "replicaCount",
        "env",
        "envConfigMaps",
        "envSecrets",
        "annotations",
        "nodeSelector",
        "affinity",
        "tolerations",
        "podSecurityContext",
        "securityContext",
        "resources",
        "livenessProbe",
        "readinessProbe",
        "startupProbe",
        "labels",
        "volumeMounts",
        "volumes",
        "schedulerName",
        "initContainers",
        "sidecarContainers",
        "deploymentStrategy",
        "service",
    }
)


def user_deployment_keys() -> frozenset[str]:
    schema = official_values_schema(LOCATION_CHART)
    if schema is None:
        return USER_DEPLOYMENT_KEYS_FALLBACK
    properties = schema["$defs"]["UserDeployment"]["properties"]
    return frozenset(properties) | {"service"}  # `service` is in the chart's values.yaml


def deployment_key_errors(values: Mapping[str, Any]) -> list[str]:
    """Typos inside deployments[] pass the chart's schema; catch them here."""
    allowed = user_deployment_keys()
    errors = []
    for index, deployment in enumerate(values.get("deployments") or []):
        for key in sorted(set(deployment) - allowed):
            errors.append(f"deployments[{index}].{key}: not a dagster-user-deployments key")
    return errors


def run_k8s_config_errors(system_values: Mapping[str, Any]) -> list[str]:
    """Typos inside runLauncher.config.k8sRunLauncher.runK8sConfig, through dagster-k8s's parser."""
    try:
        config = launcher_config_from_values(system_values)
        validate_run_k8s_config(config.get("run_k8s_config") or {})
    except Exception as error:  # noqa: BLE001 - dagster raises plain Exception on unknown keys
        return [f"runK8sConfig: {error}"]
    return []
