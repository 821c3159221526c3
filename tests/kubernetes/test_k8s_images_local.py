"""The pieces `make images-local` relies on to start images as Kubernetes would, checked without
buildah: the image's environment from the Dockerfile, pod volumes as podman mounts, the
environment Kubernetes resolves for a container, and the code server's own instance config
pointing into the volume the releases mount (the root filesystem is read-only)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from data_platform_dev.releases import core as pr
from data_platform_dev.releases.image_smoke import podman_mounts, with_port


def test_image_environment_follows_the_stage_chain() -> None:
    transformation = pr.image_environment("transformation")
    assert transformation["DAGSTER_HOME"] == "/opt/dagster/dagster_home"  # from runtime
    assert transformation["DBT_TARGET"] == "k8s"  # its own stage
    assert "DBT_TARGET" not in pr.image_environment("ingestion")
    assert "UV_SYSTEM_CERTS" not in transformation, "builder settings stay in the builder"


def test_pod_volumes_become_podman_mounts(tmp_path: Path) -> None:
    pod = {
        "volumes": [
            {"name": "tmp", "emptyDir": {}},
            {"name": "instance", "configMap": {"name": "dagster-instance"}},
        ]
    }
    container = {
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {
                "name": "instance",
                "mountPath": "/opt/dagster/dagster_home/dagster.yaml",
                "subPath": "dagster.yaml",
            },
        ]
    }
    flags = podman_mounts(pod, container, {"dagster-instance": {"dagster.yaml": "a: 1"}}, tmp_path)
    assert flags[:2] == ["--tmpfs", "/tmp:rw,mode=1777,U"]
    source, target, mode = flags[3].split(":")
    assert (Path(source).read_text(), target, mode) == (
        "a: 1",
        "/opt/dagster/dagster_home/dagster.yaml",
        "ro",
    )
    with pytest.raises(ValueError, match="hostPath"):
        podman_mounts(
            {"volumes": [{"name": "h", "hostPath": {"path": "/"}}]},
            {"volumeMounts": [{"name": "h", "mountPath": "/h"}]},
            {},
            tmp_path,
        )


def test_the_code_server_port_is_replaced_for_host_networking() -> None:
    argv = ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "x"]
    assert with_port(argv, 41234)[6] == "41234"
    assert with_port(argv, 41234)[:6] == argv[:6]


def test_container_environment_resolves_as_kubernetes_does() -> None:
    container = {
        "name": "c",
        "envFrom": [{"configMapRef": {"name": "env"}}, {"secretRef": {"name": "creds"}}],
        "env": [
            {"name": "A", "value": "from env"},
            {"name": "P", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "PW"}}},
        ],
    }
    environment = pr.container_environment(
        container, {"env": {"A": "from map", "B": "b"}}, {"creds": {"PW": "s"}}
    )
    assert environment == {"A": "from env", "B": "b", "PW": "s", "P": "s"}
    with pytest.raises(KeyError, match="creds"):
        pr.container_environment(container, {"env": {}}, {})
    optional = {"envFrom": [{"secretRef": {"name": "absent", "optional": True}}]}
    assert pr.container_environment(optional, {}, {}) == {}


def test_the_code_server_instance_writes_only_into_the_mounted_storage() -> None:
    """A code server loads an instance at start; with no dagster.yaml it created
    $DAGSTER_HOME/history on the read-only root filesystem and the location failed to load."""
    runtime = pr.dockerfile_stages()["runtime"][1]
    written = re.findall(r"base_dir: (\S+?)'", runtime)
    assert written and set(written) == {"/opt/dagster/dagster_home/storage"}
    for location in pr.locations():
        values = pr.load_yaml(pr.location_values_path(location.package))
        mounts = {m["mountPath"] for m in values["deployments"][0]["volumeMounts"]}
        assert set(written) <= mounts, f"{location.name}: storage is not a mounted volume"
