"""`make kind-e2e`: the platform end to end on a throwaway kind cluster.

1. create a kind cluster (charts/kind-cluster.yaml);
2. `skaffold run`: build the three images, load them into kind, deploy the releases in order;
3. `helm test stores` (both stores answer with the platform credentials);
4. launch the ingestion job through the Dagster GraphQL API and wait for SUCCESS;
5. assert that a Kubernetes Job ran it, in the ingestion image;
6. delete the cluster (unless --keep).

Needs Docker (a running engine), kind, skaffold, helm and kubectl on PATH, and network access to
the image registries and https://dagster-io.github.io/helm. Not part of `make test`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

from data_platform_dev.releases import core as pr

CLUSTER = "data-platform-e2e"
CONTEXT = f"kind-{CLUSTER}"
TOOLS = ("docker", "kind", "skaffold", "helm", "kubectl")
INGESTION_IMAGE = "data-platform/ingestion"

LOCATIONS_QUERY = """
query { workspaceOrError { __typename ... on Workspace { locationEntries {
  name loadStatus
  locationOrLoadError { __typename ... on PythonError { message }
    ... on RepositoryLocation { repositories { name jobs { name } } } } } } } }
"""
LAUNCH_MUTATION = """
mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  ... on InvalidSubsetError { message } ... on RunConfigValidationInvalid { errors { message } } } }
"""
RUN_QUERY = """
query($runId: ID!) { runOrError(runId: $runId) { __typename ... on Run { status } } }
"""


def log(message: str) -> None:
    print(f"[kind-e2e] {message}", flush=True)


def run(*args: str, timeout: float = 1800, capture: bool = False) -> str:
    log("$ " + " ".join(args))
    completed = subprocess.run(
        args, cwd=pr.REPO_ROOT, check=False, text=True, timeout=timeout, capture_output=capture
    )
    if completed.returncode != 0:
        detail = (completed.stderr or "")[-4000:] if capture else ""
        raise RuntimeError(f"command failed ({completed.returncode}): {' '.join(args)}\n{detail}")
    return completed.stdout or ""


def check_prerequisites() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        raise SystemExit(
            f"kind-e2e needs {', '.join(TOOLS)} on PATH; missing: {', '.join(missing)}"
        )
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        raise SystemExit("kind-e2e needs a running Docker engine (`docker info` failed)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def port_forward(service: str, remote_port: int) -> Iterator[str]:
    local = free_port()
    process = subprocess.Popen(
        [
            "kubectl",
            "--context",
            CONTEXT,
            "-n",
            pr.NAMESPACE,
            "port-forward",
            f"svc/{service}",
            f"{local}:{remote_port}",
            "--address",
            "127.0.0.1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{local}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", local), timeout=1),
            ):
                yield url
                return
            if process.poll() is not None:
                raise RuntimeError(
                    f"kubectl port-forward exited: {process.stderr.read() if process.stderr else ''}"
                )
            time.sleep(1)
        raise RuntimeError(f"port-forward to svc/{service} did not open within 60 s")
    finally:
        process.terminate()
        process.wait(timeout=10)


def graphql(url: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        payload = json.loads(response.read())
    if payload.get("errors"):
        raise RuntimeError(f"GraphQL errors: {payload['errors']}")
    return dict(payload["data"])


def wait_for_locations(url: str, timeout: float = 600) -> dict[str, list[str]]:
    """Location name -> job names, once every registered location has loaded without error
    (a location that failed to import can still say LOADED: check locationOrLoadError)."""
    expected = {location.name for location in pr.locations()}
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, RuntimeError):
            entries = graphql(url, LOCATIONS_QUERY)["workspaceOrError"]["locationEntries"]
            last = entries
            loaded = {
                entry["name"]: [
                    job["name"]
                    for repo in entry["locationOrLoadError"]["repositories"]
                    for job in repo["jobs"]
                ]
                for entry in entries
                if entry["loadStatus"] == "LOADED"
                and entry["locationOrLoadError"]
                and entry["locationOrLoadError"]["__typename"] == "RepositoryLocation"
            }
            errors = [
                e
                for e in entries
                if (e["locationOrLoadError"] or {}).get("__typename") == "PythonError"
            ]
            if errors:
                raise SystemExit(f"code location failed to load: {errors}")
            if expected <= set(loaded):
                return loaded
        time.sleep(5)
    raise RuntimeError(f"locations did not all load within {timeout:.0f} s; last answer: {last}")


def pick_ingestion_job(jobs: list[str], requested: str | None) -> str:
    if requested:
        if requested not in jobs:
            raise SystemExit(f"job {requested!r} is not in the ingestion location; it has {jobs}")
        return requested
    named = sorted(job for job in jobs if "ingest" in job and not job.startswith("__"))
    return named[0] if named else "__ASSET_JOB"


def launch_and_wait(url: str, job: str, timeout: float = 1200) -> str:
    params = {
        "selector": {
            "repositoryLocationName": "ingestion",
            "repositoryName": "__repository__",
            "jobName": job,
        },
        "runConfigData": {},
    }
    result = graphql(url, LAUNCH_MUTATION, {"params": params})["launchRun"]
    if result["__typename"] != "LaunchRunSuccess":
        raise RuntimeError(f"launchRun failed: {result}")
    run_id = str(result["run"]["runId"])
    log(f"launched {job} as run {run_id}")
    deadline = time.monotonic() + timeout
    status = "QUEUED"
    while time.monotonic() < deadline:
        status = graphql(url, RUN_QUERY, {"runId": run_id})["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(5)
    if status != "SUCCESS":
        raise RuntimeError(
            f"run {run_id} ended {status} (or timed out); see "
            f"`kubectl -n {pr.NAMESPACE} logs -l dagster/run-id={run_id}`"
        )
    return run_id


def assert_ran_as_kubernetes_job(run_id: str) -> None:
    jobs = json.loads(
        run(
            "kubectl",
            "--context",
            CONTEXT,
            "-n",
            pr.NAMESPACE,
            "get",
            "jobs",
            "-l",
            f"dagster/run-id={run_id}",
            "-o",
            "json",
            capture=True,
        )
    )["items"]
    if len(jobs) != 1:
        raise AssertionError(f"expected one Kubernetes Job for run {run_id}, found {len(jobs)}")
    job = jobs[0]
    image = job["spec"]["template"]["spec"]["containers"][0]["image"]
    if INGESTION_IMAGE not in image:
        raise AssertionError(f"run {run_id} ran in {image}, not the ingestion image")
    if not job.get("status", {}).get("succeeded"):
        raise AssertionError(
            f"Kubernetes Job {job['metadata']['name']} did not succeed: {job.get('status')}"
        )
    log(f"run {run_id} ran as Kubernetes Job {job['metadata']['name']} in {image}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keep", action="store_true", help="leave the cluster running afterwards")
    parser.add_argument(
        "--job", help="ingestion job to launch (default: the one named *ingest*, else __ASSET_JOB)"
    )
    args = parser.parse_args(argv)
    check_prerequisites()
    with contextlib.suppress(RuntimeError):
        run("kind", "delete", "cluster", "--name", CLUSTER, capture=True)
    run(
        "kind",
        "create",
        "cluster",
        "--name",
        CLUSTER,
        "--config",
        "charts/kind-cluster.yaml",
        "--wait",
        "120s",
    )
    try:
        run(
            "skaffold",
            "run",
            "--kube-context",
            CONTEXT,
            "--status-check=true",
            "--port-forward=off",
        )
        run(
            "helm",
            "test",
            pr.STORES_RELEASE,
            "--kube-context",
            CONTEXT,
            "-n",
            pr.NAMESPACE,
            "--timeout",
            "5m",
        )
        system = next(r for r in pr.releases("dev") if r.name == pr.SYSTEM_RELEASE)
        with port_forward(*pr.webserver_service(pr.render(system))) as url:
            jobs = wait_for_locations(url)
            run_id = launch_and_wait(url, pick_ingestion_job(jobs["ingestion"], args.job))
        assert_ran_as_kubernetes_job(run_id)
        log("PASSED")
        return 0
    finally:
        if args.keep:
            log(f"cluster kept: kubectl --context {CONTEXT} -n {pr.NAMESPACE} get pods")
        else:
            run("kind", "delete", "cluster", "--name", CLUSTER)


if __name__ == "__main__":
    sys.exit(main())
