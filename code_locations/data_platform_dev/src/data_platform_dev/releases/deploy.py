"""`make deploy`: `helm upgrade --install --atomic` every release, in order, against the current
kubectl context, with the production values:

    python -m data_platform_dev.releases.deploy --images build/images.json [--dry-run]

`--images` is skaffold's build output (`skaffold build -p production --default-repo <registry>
--file-output build/images.json`, i.e. `make images`): the built image references, digest
included, replace the repository and tag in our chart and in each location's values.

A Dagster version bump (the system release deployed at another chart version) first stops the
webserver and the daemon, runs the chart's `dagster instance migrate` Job and waits for it, as
charts/dagster-system/UPGRADE.md describes; every object name comes from the rendered release.
Needs the helm and kubectl CLIs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from data_platform_dev.releases import core as pr

MIGRATE_TEMPLATE = "templates/job-instance-migrate.yaml"
HELM_TIMEOUT = "15m"
MIGRATE_TIMEOUT = "15m"


def built_images(path: Path | None) -> dict[str, str]:
    """Image repository (as in skaffold.yaml) -> the reference skaffold built and pushed."""
    if path is None:
        return {}
    builds = json.loads(path.read_text())["builds"]
    return {build["imageName"]: build["tag"] for build in builds}


@dataclass(frozen=True)
class Step:
    """One CLI call of the deploy. `output`: write its stdout there (a later step reads it)."""

    why: str
    command: tuple[str, ...]
    output: Path | None = None


def helm_upgrade_command(helm: str, release: pr.Release, values_path: Path) -> list[str]:
    """`--atomic`: a release that does not become ready is rolled back, not left half-upgraded."""
    chart = str(pr.STORES_CHART_DIR) if not release.official else release.chart
    command = [
        helm,
        "upgrade",
        "--install",
        release.name,
        chart,
        "--namespace",
        release.namespace,
        "--create-namespace",
        "--values",
        str(values_path),
        "--atomic",
        "--wait",
        "--timeout",
        HELM_TIMEOUT,
    ]
    if release.official:
        command += ["--repo", pr.DAGSTER_HELM_REPO, "--version", pr.DAGSTER_CHART_VERSION]
    return command


@dataclass(frozen=True)
class SystemNames:
    """What a migration touches, as the system release renders it."""

    webserver: str
    daemon: str
    migrate_job: str
    pod_selectors: tuple[str, ...]  # the two Deployments' pod selectors, as kubectl -l takes them


def system_names(release: pr.Release) -> SystemNames:
    """The webserver and daemon Deployments and the migrate Job, from the rendered release."""
    objects = pr.render(release, {"migrate": {"enabled": True}})
    deployments = {
        (obj["metadata"].get("labels") or {}).get("component"): obj
        for obj in objects
        if obj.get("kind") == "Deployment"
    }
    jobs = [
        obj["metadata"]["name"]
        for obj in objects
        if obj.get("kind") == "Job" and obj["metadata"]["name"].endswith("-instance-migrate")
    ]
    if len(jobs) != 1 or not {"dagster-webserver", "dagster-daemon"} <= set(deployments):
        raise LookupError(
            f"system release {release.name}: expected the webserver and daemon Deployments and "
            f"one instance-migrate Job, rendered {sorted(deployments.items())} and jobs {jobs}"
        )
    webserver, daemon = deployments["dagster-webserver"], deployments["dagster-daemon"]
    selectors = tuple(
        ",".join(f"{k}={v}" for k, v in sorted(d["spec"]["selector"]["matchLabels"].items()))
        for d in (webserver, daemon)
    )
    return SystemNames(
        webserver["metadata"]["name"], daemon["metadata"]["name"], jobs[0], selectors
    )


def migration_steps(
    helm: str, kubectl: str, release: pr.Release, values_path: Path, names: SystemNames
) -> list[Step]:
    """UPGRADE.md as steps: nothing writes to the instance while its schema migrates."""
    ns = ("--namespace", release.namespace)
    job_file = values_path.with_name(f"{release.name}-instance-migrate.yaml")
    return [
        Step(
            "stop the webserver and the daemon (they write to the instance)",
            (kubectl, *ns, "scale", "deployment", names.webserver, names.daemon, "--replicas=0"),
        ),
        *(
            Step(
                "wait until their pods are gone",
                (
                    kubectl,
                    *ns,
                    "wait",
                    "--for=delete",
                    "pod",
                    f"--selector={selector}",
                    f"--timeout={MIGRATE_TIMEOUT}",
                ),
            )
            for selector in names.pod_selectors
        ),
        Step(
            "render the chart's instance-migrate Job at the new version",
            (
                helm,
                "template",
                release.name,
                release.chart,
                *ns,
                "--repo",
                pr.DAGSTER_HELM_REPO,
                "--version",
                pr.DAGSTER_CHART_VERSION,
                "--values",
                str(values_path),
                "--set",
                "migrate.enabled=true",
                "--show-only",
                MIGRATE_TEMPLATE,
            ),
            output=job_file,
        ),
        Step(
            "a migrate Job left by an earlier attempt would keep its old spec",
            (kubectl, *ns, "delete", "job", names.migrate_job, "--ignore-not-found"),
        ),
        Step("dagster instance migrate", (kubectl, *ns, "apply", "-f", str(job_file))),
        Step(
            "wait for the migration (a failure stops the deploy: the old release stays stopped)",
            (
                kubectl,
                *ns,
                "wait",
                "--for=condition=complete",
                f"--timeout={MIGRATE_TIMEOUT}",
                f"job/{names.migrate_job}",
            ),
        ),
        Step("the migration's output", (kubectl, *ns, "logs", f"job/{names.migrate_job}")),
        Step(
            "the Job is done; the upgrade brings the webserver and daemon back",
            (kubectl, *ns, "delete", "job", names.migrate_job),
        ),
    ]


def deploy_plan(
    releases: Sequence[pr.Release],
    deployed_versions: Mapping[str, str | None],
    values_paths: Mapping[str, Path],
    helm: str = "helm",
    kubectl: str = "kubectl",
) -> list[Step]:
    """Every step of `make deploy`, in order. `deployed_versions`: release -> the chart version
    installed now (None: not installed). The system release at another version is migrated
    before its upgrade."""
    steps: list[Step] = [
        Step(
            "the namespace, labelled for Pod Security Admission `restricted`",
            (kubectl, "apply", "-f", str(pr.NAMESPACE_MANIFEST)),
        )
    ]
    for release in releases:
        values_path = values_paths[release.name]
        deployed = deployed_versions.get(release.name)
        if release.chart == pr.SYSTEM_CHART and deployed and deployed != pr.DAGSTER_CHART_VERSION:
            names = system_names(release)
            steps += migration_steps(helm, kubectl, release, values_path, names)
        steps.append(
            Step(
                f"deploy {release.name}",
                tuple(helm_upgrade_command(helm, release, values_path)),
            )
        )
    return steps


def deployed_chart_version(helm: str, release: pr.Release) -> str | None:
    """The chart version of the release installed now (`helm list`), None when not installed."""
    command = [helm, "list", "--namespace", release.namespace, "--output", "json"]
    listed = subprocess.run(
        [*command, "--filter", f"^{release.name}$"],
        check=True,
        capture_output=True,
        text=True,
    )
    for item in json.loads(listed.stdout or "[]"):
        if item.get("name") == release.name:
            chart = str(item.get("chart", ""))
            return chart.removeprefix(f"{release.chart}-") if chart else None
    return None


def run_step(step: Step) -> None:
    print(f"# {step.why}\n$ " + " ".join(step.command), flush=True)
    if step.output is None:
        subprocess.run(step.command, check=True)
        return
    completed = subprocess.run(step.command, check=True, capture_output=True, text=True)
    step.output.write_text(completed.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=Path, help="skaffold --file-output of the image build")
    parser.add_argument("--dry-run", action="store_true", help="print the steps only")
    parser.add_argument(
        "--deployed-version",
        help="with --dry-run: the system chart version to plan an upgrade from",
    )
    args = parser.parse_args(argv)
    helm, kubectl = shutil.which("helm"), shutil.which("kubectl")
    if (helm is None or kubectl is None) and not args.dry_run:
        print("make deploy needs the helm and kubectl CLIs on PATH")
        return 2
    images = built_images(args.images)
    if not images:
        print("no --images given: deploying the image tags written in the values files")
    releases = pr.releases("production", images)
    with tempfile.TemporaryDirectory() as scratch:
        values_paths = {}
        for release in releases:
            values_paths[release.name] = Path(scratch) / f"{release.name}.yaml"
            values_paths[release.name].write_text(yaml.safe_dump(release.values()))
        if args.dry_run:
            deployed = {pr.SYSTEM_RELEASE: args.deployed_version}
        else:
            assert helm is not None
            deployed = {r.name: deployed_chart_version(helm, r) for r in releases}
        plan = deploy_plan(releases, deployed, values_paths, helm or "helm", kubectl or "kubectl")
        for step in plan:
            if args.dry_run:
                print(f"# {step.why}\n$ " + " ".join(step.command))
            else:
                run_step(step)
    return 0


if __name__ == "__main__":
    sys.exit(main())
