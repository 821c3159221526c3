"""The kind profile fits a 2-CPU, 8 GiB laptop VM: the requests of every long-running pod it
deploys plus the run pods the coordinator may start at once stay within 1.5 CPU and 5 GiB
(the rest is for kind's own control plane, the node and the desktop)."""

from __future__ import annotations

from typing import Any

import k8s_cache
import pytest
from data_platform_dev.releases import core as pr

CPU_BUDGET = 1.5
MEMORY_BUDGET_GIB = 5.0
UNITS = {"Ki": 2**-20, "Mi": 2**-10, "Gi": 1.0, "Ti": 2**10, "k": 1e3 / 2**30, "M": 1e6 / 2**30}


def cpu(value: Any) -> float:
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def memory_gib(value: Any) -> float:
    text = str(value)
    for suffix, factor in UNITS.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text) / 2**30


def pod_requests(pod_spec: dict[str, Any]) -> tuple[float, float]:
    """What the scheduler reserves for a pod: the larger of its containers' sum and its
    largest init container."""

    def requests(container: dict[str, Any]) -> tuple[float, float]:
        wanted = (container.get("resources") or {}).get("requests") or {}
        return cpu(wanted.get("cpu", 0)), memory_gib(wanted.get("memory", 0))

    main = [requests(c) for c in pod_spec.get("containers") or []]
    init = [requests(c) for c in pod_spec.get("initContainers") or []]
    return (
        max(sum(c for c, _ in main), max((c for c, _ in init), default=0.0)),
        max(sum(m for _, m in main), max((m for _, m in init), default=0.0)),
    )


def kind_profile() -> list[tuple[str, float, float]]:
    """(pod, cpu, memory GiB) for every pod the kind profile keeps running, replicas counted,
    plus maxConcurrentRuns copies of the largest run pod."""
    pods = []
    for obj in k8s_cache.all_rendered("dev"):
        if obj["kind"] not in pr.LONG_RUNNING_KINDS:
            continue
        replicas = int((obj.get("spec") or {}).get("replicas", 1))
        pod_cpu, pod_memory = pod_requests(pr.pod_template(obj)[1])  # type: ignore[index]
        pods.append((pr.describe(obj), pod_cpu * replicas, pod_memory * replicas))
    system = k8s_cache.release("dev", pr.SYSTEM_RELEASE).values()
    coordinator = system["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    launcher = pr.instance_launcher_config(k8s_cache.rendered("dev", pr.SYSTEM_RELEASE))
    runs = []
    for location in pr.locations():
        context = pr.rendered_container_context(k8s_cache.rendered("dev", location.deployment))
        job = pr.build_run_job(launcher, context, f"{location.image}:x", location.name)
        runs.append((f"run pod {location.name}", *pod_requests(job["spec"]["template"]["spec"])))
    largest = max(runs, key=lambda run: (run[1], run[2]))
    concurrent = int(coordinator["maxConcurrentRuns"])
    pods.append((f"{concurrent} x {largest[0]}", largest[1] * concurrent, largest[2] * concurrent))
    return pods


def test_the_kind_profile_fits_a_two_cpu_eight_gib_laptop() -> None:
    pods = kind_profile()
    total_cpu = sum(p[1] for p in pods)
    total_memory = sum(p[2] for p in pods)
    for name, pod_cpu, pod_memory in pods:
        print(f"{name}: {pod_cpu:.2f} CPU, {pod_memory:.2f} GiB")
    print(f"kind profile: {total_cpu:.2f} CPU, {total_memory:.2f} GiB requested")
    assert total_cpu <= CPU_BUDGET, f"{total_cpu:.2f} CPU requested"
    assert total_memory <= MEMORY_BUDGET_GIB, f"{total_memory:.2f} GiB requested"
    assert any(name.startswith("3 x run pod") for name, _, _ in pods), "run pods are counted"


def test_kind_sizes_never_reach_production() -> None:
    config = pr.load_yaml(pr.REPO_ROOT / "skaffold.yaml")
    production = next(p for p in config["profiles"] if p["name"] == "production")
    releases = config["deploy"]["helm"]["releases"]
    for index, release in enumerate(releases):
        if release.get("setValues"):
            assert {"op": "remove", "path": f"/deploy/helm/releases/{index}/setValues"} in (
                production["patches"]
            ), release["name"]
    for location in pr.locations():
        values = pr.load_yaml(pr.location_values_path(location.package))
        production_release = k8s_cache.release("production", location.deployment).values()
        assert (
            production_release["deployments"][0]["resources"]
            == (values["deployments"][0]["resources"])
        )


@pytest.mark.parametrize(
    ("quantity", "expected"), [("100m", 0.1), ("2", 2.0), ("448Mi", 0.4375), ("1Gi", 1.0)]
)
def test_quantities(quantity: str, expected: float) -> None:
    parsed = cpu(quantity) if quantity[-1] in "m0123456789" else memory_gib(quantity)
    assert parsed == pytest.approx(expected)
