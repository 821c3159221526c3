"""Checkov (PyPI, run isolated with uv) over every rendered release, development and production,
and the Dockerfiles: zero failed checks. Skips live in .checkov.yaml, each with its reason, so
`checkov --config-file .checkov.yaml` by hand gives the same verdict."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import k8s_cache
import pytest
from data_platform_dev.releases import core as pr

CHECKOV = "checkov==3.3.30"


def find_uv() -> str | None:
    for candidate in (
        os.environ.get("UV"),
        shutil.which("uv"),
        str(pr.REPO_ROOT / ".tools" / "bin" / "uv"),
    ):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def test_checkov_finds_nothing_in_the_manifests_and_dockerfiles(tmp_path: Path) -> None:
    uv = find_uv()
    if uv is None:
        pytest.skip("uv not found (neither $UV, PATH nor .tools/bin/uv): run through `make test`")
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    for env in pr.ENVIRONMENTS:
        for release in pr.releases(env):
            try:
                objects = k8s_cache.rendered(env, release.name)
            except pr.ChartMissing:
                continue
            (manifests / f"{release.name}-{env}.yaml").write_text(pr.dump_manifests(objects))
    scanned = sorted(p.name for p in manifests.iterdir())
    print(f"checkov scans {scanned} and images/Dockerfile")
    if not k8s_cache.official_charts_present():
        print(k8s_cache.MISSING_CHARTS)
    env = {
        **os.environ,
        "UV_PYTHON": os.environ.get("UV_PYTHON", "python3.11"),
        "UV_PYTHON_DOWNLOADS": "never",
    }
    completed = subprocess.run(
        [
            uv,
            "tool",
            "run",
            "--from",
            CHECKOV,
            "checkov",
            "--config-file",
            str(pr.REPO_ROOT / ".checkov.yaml"),
            "--directory",
            str(manifests),
            "--directory",
            str(pr.REPO_ROOT / "images"),
            "--output",
            "json",
            "--output-file-path",
            str(tmp_path / "report"),
        ],
        cwd=pr.REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    report_path = tmp_path / "report" / "results_json.json"
    assert report_path.is_file(), (
        f"checkov produced no report (exit {completed.returncode}):\n{completed.stderr[-3000:]}"
    )
    reports = json.loads(report_path.read_text())
    reports = reports if isinstance(reports, list) else [reports]
    assert {r["check_type"] for r in reports} == {"kubernetes", "dockerfile"}, (
        "both frameworks must have run"
    )
    failures = [
        f"{r['check_type']}: {f['check_id']} {f['check_name']} - {f['resource']} ({f['file_path']})"
        for r in reports
        for f in r["results"]["failed_checks"]
    ]
    passed = sum(r["summary"]["passed"] for r in reports)
    print(f"checkov: {passed} passed, {len(failures)} failed")
    assert failures == []
    assert passed > 0
