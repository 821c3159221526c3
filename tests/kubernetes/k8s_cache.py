"""Renders shared by the tests of this folder: each release is rendered once per session."""

from __future__ import annotations

from functools import cache

from data_platform_dev.releases import core as pr


@cache
def release(env: str, name: str) -> pr.Release:
    for candidate in pr.releases(env):
        if candidate.name == name:
            return candidate
    raise KeyError(f"no release {name!r} in {env}")


@cache
def rendered(env: str, name: str) -> tuple[pr.Manifest, ...]:
    """The release's objects; raises pr.ChartMissing for an official chart not fetched."""
    return tuple(pr.render(release(env, name)))


def official_charts_present() -> bool:
    return all(pr.official_chart_archive(chart) is not None for chart in pr.OFFICIAL_CHARTS)


MISSING_CHARTS = (
    f"official charts dagster/dagster-user-deployments {pr.DAGSTER_CHART_VERSION} not fetched "
    f"(no {pr.VENDOR_DIR.relative_to(pr.REPO_ROOT)}/*.tgz; `make chart-deps` downloads them where "
    "the network allows): rendering only our chart; the values files are still checked against "
    "the reference values schemas"
)


@cache
def all_rendered(env: str) -> tuple[pr.Manifest, ...]:
    """Every release that can be rendered here (our chart always, official ones when fetched)."""
    objects: list[pr.Manifest] = []
    for candidate in pr.releases(env):
        try:
            objects.extend(rendered(env, candidate.name))
        except pr.ChartMissing:
            continue
    return tuple(objects)
