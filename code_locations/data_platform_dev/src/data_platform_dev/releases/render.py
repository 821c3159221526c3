"""`make render`: every release rendered to plain manifests, one file per release.

    python -m data_platform_dev.releases.render [--env dev|production] [--out build/manifests]

The official Dagster releases render with the 1.13.27 packages when `make chart-deps` fetched
them, else with the official 1.9.4 packages from shared/reference; each line says which.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data_platform_dev.releases import core as pr


def render_all(env: str, out_dir: Path) -> tuple[list[tuple[Path, str, str, int]], list[str]]:
    """Write <out>/<release>.yaml for each release; return (file, chart, chart version, object
    count) per release written, and the releases left out with the reason."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("*.yaml"):
        stale.unlink()
    written, skipped = [], []
    for release in pr.releases(env):
        try:
            objects = pr.render(release)
        except pr.ChartMissing as missing:
            skipped.append(f"{release.name}: {missing}")
            continue
        path = out_dir / f"{release.name}.yaml"
        version = pr.chart_version_for(release)
        header = (
            f"# Release {release.name} (chart {release.chart} {version}, {env} values), "
            f"rendered by {pr.engine_name()}\n"
        )
        path.write_text(header + pr.dump_manifests(objects))
        written.append((path, release.chart, version, len(objects)))
    return written, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", choices=pr.ENVIRONMENTS, default="dev")
    parser.add_argument("--out", type=Path, default=pr.REPO_ROOT / "build" / "manifests")
    args = parser.parse_args(argv)
    written, skipped = render_all(args.env, args.out)
    for path, chart, version, count in written:
        shown = path.relative_to(pr.REPO_ROOT) if path.is_relative_to(pr.REPO_ROOT) else path
        print(f"rendered {shown}: {count} objects, chart {chart} {version}")
    for reason in skipped:
        print(f"skipped  {reason}")
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
