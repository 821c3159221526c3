"""`make deploy`: `helm upgrade --install` every release, in order, against the current kubectl
context, with the production values:

    python -m data_platform_dev.releases.deploy --images build/images.json [--dry-run]

`--images` is skaffold's build output (`skaffold build -p production --default-repo <registry>
--file-output build/images.json`, i.e. `make images`): the built image references replace the
repository and tag in our chart and in each location's values. Needs the helm CLI.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from data_platform_dev.releases import core as pr


def built_images(path: Path | None) -> dict[str, str]:
    """Image repository (as in skaffold.yaml) -> the reference skaffold built and pushed."""
    if path is None:
        return {}
    builds = json.loads(path.read_text())["builds"]
    return {build["imageName"]: build["tag"] for build in builds}


def helm_upgrade_command(helm: str, release: pr.Release, values_path: Path) -> list[str]:
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
        "--wait",
        "--timeout",
        "15m",
    ]
    if release.official:
        command += ["--repo", pr.DAGSTER_HELM_REPO, "--version", pr.DAGSTER_CHART_VERSION]
    return command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=Path, help="skaffold --file-output of the image build")
    parser.add_argument("--dry-run", action="store_true", help="print the helm commands only")
    args = parser.parse_args(argv)
    helm = shutil.which("helm")
    if helm is None and not args.dry_run:
        print("make deploy needs the helm CLI on PATH (https://helm.sh/docs/intro/install/)")
        return 2
    images = built_images(args.images)
    if not images:
        print("no --images given: deploying the image tags written in the values files")
    with tempfile.TemporaryDirectory() as scratch:
        for release in pr.releases("production", images):
            values_path = Path(scratch) / f"{release.name}.yaml"
            values_path.write_text(yaml.safe_dump(release.values()))
            command = helm_upgrade_command(helm or "helm", release, values_path)
            print("$ " + " ".join(command), flush=True)
            if not args.dry_run:
                subprocess.run(command, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
