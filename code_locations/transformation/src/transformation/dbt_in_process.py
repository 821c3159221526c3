"""dbt in the step's own process, on the manifest the location already loaded.

`dbt build` as a subprocess pays dbt's start-up and a whole parse on every build: dbt drops its
partial-parse cache whenever --vars change, and every build passes a new as_of. Here dbt runs
through its Python API (dbtRunner) on manifest.json, read once per process, and its events
become the same Dagster events DbtCliResource.cli(...).stream() yields.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtProject
from dagster_dbt.asset_utils import (
    DAGSTER_DBT_EXCLUDE_METADATA_KEY,
    DAGSTER_DBT_SELECT_METADATA_KEY,
    DAGSTER_DBT_SELECTOR_METADATA_KEY,
    DBT_INDIRECT_SELECTION_ENV,
    get_subset_selection_for_context,
)
from dagster_dbt.core.dbt_cli_event import DbtCoreCliEventMessage
from dagster_dbt.dbt_manifest import DbtManifestParam, validate_manifest
from dagster_dbt.errors import DagsterDbtCliRuntimeError

from transformation.dbt_templates import template_cache_dir, use_compiled_templates
from transformation.failed_checks import compiled_sql, explain_failure

if TYPE_CHECKING:
    from data_platform.resources import PostgresResource
    from dbt.contracts.graph.manifest import Manifest

_RESULT_EVENTS = {"LogModelResult", "LogTestResult", "LogSeedResult", "LogSnapshotResult"}
# What dbt validates against a JSON schema when a command starts (project, profile, selectors)
# and when a test ends: each schema is built once per process, about a third of a second in
# all, so prepare() builds them. test_in_process_build checks that a build after prepare() builds none.
START_UP_SCHEMAS = {
    "dbt.contracts.project": (
        "Project",
        "ProjectFlags",
        "ProfileConfig",
        "PackageConfig",
        "Configuration",
    ),
    "dbt.contracts.selection": ("SelectorFile",),
    "dbt.adapters.postgres.connections": ("PostgresCredentials",),
    "dbt.task.test": ("TestResultData",),
}
_manifests: dict[tuple[Path, float, str], Manifest] = {}
_DONE = object()


def dbt_manifest(path: Path, database: str) -> Manifest:
    """manifest.json as dbt's Manifest, its relations in ``database``; read once per process.

    The manifest was parsed where it was built (an image build, another warehouse): its nodes
    carry that database, and Postgres refuses a query that names another database.
    """
    key = (path, path.stat().st_mtime, database)
    if key not in _manifests:
        from dbt.contracts.graph.manifest import Manifest, WritableManifest
        from dbt.contracts.graph.nodes import GenericTestNode

        manifest = Manifest.from_writable_manifest(
            WritableManifest.read_and_check_versions(str(path))
        )
        # the artifact's node union reads every test as a singular one: generic tests lose
        # their test_metadata (the arguments of unique, relationships, ...) and fail to compile
        for unique_id, node in json.loads(path.read_text())["nodes"].items():
            if node["resource_type"] == "test" and node.get("test_metadata"):
                manifest.nodes[unique_id] = GenericTestNode.from_dict(node)
        for node in [*manifest.nodes.values(), *manifest.sources.values()]:
            built_in = getattr(node, "database", None)
            if built_in and built_in != database:
                node.database = database
                if node.relation_name and node.relation_name.startswith(f'"{built_in}".'):
                    node.relation_name = f'"{database}".' + node.relation_name[len(built_in) + 3 :]
        manifest.build_flat_graph()  # the `graph` macros read (dbt builds it when it parses)
        _manifests.clear()
        _manifests[key] = manifest
    return _manifests[key]


def incremental_relations(manifest_path: Path, database: str) -> list[str]:
    """The incremental models' tables ("schema"."table"), from the prepared manifest."""
    nodes = dbt_manifest(manifest_path, database).nodes.values()
    return [
        f'"{node.schema}"."{node.alias}"'
        for node in nodes
        if node.resource_type == "model" and node.config.materialized == "incremental"
    ]


def prepare(manifest_path: Path, database: str) -> None:
    """Load what a build needs before it runs (dbt's runner and Postgres adapter, the manifest,
    the schemas dbt checks its configuration with, the compiled templates: dbt_templates.py):
    a build that calls this before taking its lock holds the lock only while dbt runs.

    Then freeze what is loaded (gc.freeze): the modules and the manifest are about 300,000
    objects the collector tracks, living as long as the process, and the full collection that
    came during each build walked them all: about 0.2 s holding the GIL while every dbt thread
    waited. Frozen, the collector skips them; only a reference cycle already garbage at this
    point is never freed.
    """
    import dbt.adapters.postgres
    import dbt.cli.main  # noqa: F401

    dbt_manifest(manifest_path, database)
    use_compiled_templates(template_cache_dir(manifest_path))
    for module, names in START_UP_SCHEMAS.items():
        contracts = importlib.import_module(module)
        for name in names:
            getattr(contracts, name).json_schema()
    gc.freeze()


def _raw_event(message: Any) -> dict[str, Any]:
    """An event as dbt's JSON log line has it (what DbtCliEventMessage reads)."""
    from dbt_common.events.functions import msg_to_dict

    return msg_to_dict(message)


def run_dbt(
    args: Sequence[str],
    *,
    project: DbtProject,
    database: str,
    target_path: Path,
    callbacks: Sequence[Callable[[Any], None]] = (),
    project_dir: Path | None = None,
) -> Any:
    """`dbt <args>` through dbtRunner on the prepared manifest; dbt's result (artifacts in
    ``target_path``).

    dbt.log gets dbt's info lines (each node's start and result), not every statement at
    debug level: 550 debug events of an incremental build, each formatted and scrubbed of
    secrets holding the GIL. DBT_LOG_LEVEL_FILE=debug brings them back.
    """
    from dbt.cli.main import dbtRunner

    runner = dbtRunner(
        manifest=dbt_manifest(project.manifest_path, database), callbacks=list(callbacks)
    )
    return runner.invoke(
        [
            *args,
            "--project-dir",
            str(project_dir or project.project_dir),
            "--profiles-dir",
            str(project.profiles_dir),
            "--target-path",
            str(target_path),
            "--log-path",
            str(target_path),
            *([] if "DBT_LOG_LEVEL_FILE" in os.environ else ["--log-level-file", "info"]),
            "--no-send-anonymous-usage-stats",
            "--quiet",
        ]
    )


def dbt_build_events(
    args: Sequence[str],
    *,
    project: DbtProject,
    database: str,
    target_path: Path,
    context: dg.AssetExecutionContext | None = None,
    manifest: DbtManifestParam | None = None,
    translator: DagsterDbtTranslator | None = None,
    warehouse: PostgresResource | None = None,
) -> Iterator[Any]:
    """Run a dbt command in this process and yield its Dagster events as nodes finish.

    With a context, dbt runs what the context selected (as DbtCliResource.cli does); raises
    DagsterDbtCliRuntimeError, after every event, when dbt reports an error. With a warehouse,
    a failed check carries its test's failing rows (failed_checks.py).

    The manifest and translator come from the caller, not from the assets definition's
    metadata as in DbtCliResource.cli: the location builds its dbt assets without dagster-dbt
    (dbt_specs.py). Unlike .cli, a selection of more than 200 nodes is passed as arguments,
    not as a generated selectors.yml (this project has fewer).
    """
    translator = translator or DagsterDbtTranslator()
    manifest_json = validate_manifest(manifest) if manifest else {}
    selection: list[str] = []
    indirect_selection = os.getenv(DBT_INDIRECT_SELECTION_ENV)
    if context is not None and context.has_assets_def:
        tags = context.op.tags
        selection, override = get_subset_selection_for_context(
            context=context,
            manifest=manifest_json,
            select=tags.get(DAGSTER_DBT_SELECT_METADATA_KEY),
            exclude=tags.get(DAGSTER_DBT_EXCLUDE_METADATA_KEY),
            selector=tags.get(DAGSTER_DBT_SELECTOR_METADATA_KEY),
            dagster_dbt_translator=translator,
            current_dbt_indirect_selection_env=indirect_selection,
        )
        indirect_selection = override or indirect_selection
    if indirect_selection:
        selection += ["--indirect-selection", indirect_selection]
    events: queue.Queue[Any] = queue.Queue()

    def on_event(message: Any) -> None:
        if message.info.name in _RESULT_EVENTS:
            events.put(_raw_event(message))

    outcome: dict[str, Any] = {}

    def invoke() -> None:
        try:
            # not manifest.json again (the prepared one, a quarter of a second per build):
            # run_results.json only
            outcome["result"] = run_dbt(
                [*args, *selection, "--no-write-json"],
                project=project,
                database=database,
                target_path=target_path,
                callbacks=[on_event],
                project_dir=Path(project.project_dir),
            )
            if hasattr(outcome["result"].result, "write"):
                outcome["result"].result.write(str(target_path / "run_results.json"))
        except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
            outcome["error"] = error
        finally:
            events.put(_DONE)

    worker = threading.Thread(target=invoke, name="dbt", daemon=True)
    worker.start()
    failed = []
    while (raw := events.get()) is not _DONE:
        event = DbtCoreCliEventMessage(raw_event=raw, event_history_metadata={})
        if context is not None:
            context.log.info(str(event))
        status = raw["data"].get("status") or raw["data"]["node_info"].get("node_status")
        if str(status).lower() in {"error", "fail"}:
            failed.append(raw["data"]["node_info"]["unique_id"])
        node = manifest_json.get("nodes", {}).get(raw["data"]["node_info"]["unique_id"])
        for dagster_event in event.to_default_asset_events(
            manifest=manifest_json,
            dagster_dbt_translator=translator,
            context=context,
            target_path=target_path,
            project=project,
        ):
            if (
                isinstance(dagster_event, dg.AssetCheckResult)
                and not dagster_event.passed
                and warehouse is not None
                and node
            ):
                dagster_event = explain_failure(
                    dagster_event, compiled_sql(target_path, node), warehouse
                )
            yield dagster_event
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    result = outcome["result"]
    if not result.success:
        raise DagsterDbtCliRuntimeError(
            description=f"dbt {' '.join(args)} failed (target {target_path}): "
            f"{', '.join(failed) or result.exception}"
        )
