"""`make chart-deps`: fetch the official Dagster charts (dagster, dagster-user-deployments) at the
pinned version into charts/dagster-system/charts/ (git-ignored), for `make render` and the tests.

Uses the helm CLI when present, else helm-python-sdk. Without network access to the chart
repository it says so and exits 0: everything else works without these charts.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

from data_platform_dev.releases import core as pr


def fetch(chart: str) -> str:
    pr.VENDOR_DIR.mkdir(parents=True, exist_ok=True)
    helm = shutil.which("helm")
    if helm:
        subprocess.run(
            [
                helm,
                "pull",
                chart,
                "--repo",
                pr.DAGSTER_HELM_REPO,
                "--version",
                pr.DAGSTER_CHART_VERSION,
                "--destination",
                str(pr.VENDOR_DIR),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
    else:
        import helm_python

        helm_python.pull(
            chart,
            repo_url=pr.DAGSTER_HELM_REPO,
            version=pr.DAGSTER_CHART_VERSION,
            destination=pr.VENDOR_DIR,
        )
    archive = pr.vendored_chart_archive(chart)
    if archive is None:
        raise RuntimeError(
            f"{chart}: the download did not produce {chart}-{pr.DAGSTER_CHART_VERSION}.tgz"
        )
    return str(archive.relative_to(pr.REPO_ROOT))


def main() -> int:
    failures = 0
    for chart in pr.OFFICIAL_CHARTS:
        if pr.vendored_chart_archive(chart) is not None:
            print(f"present  {chart} {pr.DAGSTER_CHART_VERSION}")
            continue
        try:
            print(f"fetched  {fetch(chart)}")
        except Exception as error:  # noqa: BLE001 - report any download failure and go on
            failures += 1
            detail = getattr(error, "stderr", None) or error
            print(
                f"NOT fetched {chart} {pr.DAGSTER_CHART_VERSION} "
                f"from {pr.DAGSTER_HELM_REPO}: {detail}"
            )
    if failures:
        print(
            "The official charts could not be downloaded here; `make render` and the tests "
            f"render the official {pr.REFERENCE_CHART_VERSION} packages from "
            "../shared/reference/dagster-helm-chart/packages instead."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
