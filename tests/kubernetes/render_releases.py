"""`make render`: every release rendered to plain manifests, one file per release.

    python tests/kubernetes/render_releases.py [--env dev|production] [--out build/manifests]

Our chart is always rendered; the official Dagster releases only when `make chart-deps` has
fetched the charts (the run says which were left out and why).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import platform_releases as pr


def render_all(env: str, out_dir: Path) -> tuple[list[Path], list[str]]:
    """Write <out>/<release>.yaml for each release; return the files and the skipped releases."""
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
        header = (
            f"# Release {release.name} (chart {release.chart}, {env} values), "
            f"rendered by {pr.engine_name()}\n"
        )
        path.write_text(header + pr.dump_manifests(objects))
        written.append(path)
    return written, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", choices=pr.ENVIRONMENTS, default="dev")
    parser.add_argument("--out", type=Path, default=pr.REPO_ROOT / "build" / "manifests")
    args = parser.parse_args(argv)
    written, skipped = render_all(args.env, args.out)
    for path in written:
        print(
            f"rendered {path.relative_to(pr.REPO_ROOT) if path.is_relative_to(pr.REPO_ROOT) else path}"
        )
    for reason in skipped:
        print(f"skipped  {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
