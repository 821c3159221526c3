"""A code location's one ``Definitions``: Dagster's own defs-folder loader, plus what it lacks.

``dg.load_from_defs_folder`` imports every module under a location's ``defs/`` and collects
everything defined there. Three things it does not do are added here, and one thing it does
is left out:

- name both modules when two define the same asset key, asset check, job/schedule/sensor name
  or resource key (Dagster fails such a load, but without saying where the two copies live),
  and refuse a module that holds a ``Definitions`` object beside loose definitions (the loader
  would keep the object and silently drop the rest);
- add a RUNNING automation sensor when the location has automated assets (Dagster's implicit
  one starts STOPPED, leaving cross-location automation waiting for a click);
- run steps in the run's own process by default (a run is already its own process, a
  Kubernetes Job in production; a subprocess per step would import the location again);
- skip the dg plugin catalogue: the loader also imports every package registered as a dg
  plugin (dagster-dbt, dagster-aws...) to list their component types for the UI, which cost
  1 to 2 s of every code server start, run and check, in locations that use none of them.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import (
    UnresolvedAssetJobDefinition,
)
from dagster._utils.warnings import suppress_dagster_warnings
from dagster.components.definitions import LazyDefinitions


class DuplicateDefinitionError(Exception):
    """Two modules define the same asset key, check, job, schedule, sensor or resource name."""


_JOB_KINDS = (
    dg.JobDefinition,
    UnresolvedAssetJobDefinition,
    dg.ScheduleDefinition,
    dg.SensorDefinition,
)


def _names(obj: Any) -> Iterator[tuple[str, str]]:
    """(kind, name) pairs that a loose module-level object claims in a location."""
    if isinstance(obj, dg.AssetChecksDefinition):
        for check in obj.check_keys:
            yield "asset check", check.to_user_string()
    elif isinstance(obj, dg.AssetsDefinition):
        for key in obj.keys:
            yield "asset key", key.to_user_string()
        for check in obj.check_keys:
            yield "asset check", check.to_user_string()
    elif isinstance(obj, dg.AssetSpec | dg.SourceAsset):
        yield "asset key", obj.key.to_user_string()
    elif isinstance(obj, _JOB_KINDS):
        yield "job, schedule or sensor name", obj.name


def _claims(module: ModuleType) -> Iterator[tuple[str, str, Any]]:
    """(kind, name, object) for everything the defs loader will take from ``module``."""
    members = [obj for _, obj in sorted(vars(module).items())]
    collections = [m for m in members if isinstance(m, dg.Definitions | LazyDefinitions)]
    loose = [m for m in members if any(_names(m))]
    if collections and loose:
        names = ", ".join(sorted({name for obj in loose for _, name in _names(obj)}))
        raise DuplicateDefinitionError(
            f"{module.__name__} holds a Definitions object and loose definitions ({names}); "
            "Dagster's loader keeps only the Definitions object. Put the loose ones in it, or "
            "move them to a module of their own."
        )
    for obj in loose:
        for kind, name in _names(obj):
            yield kind, name, obj
    for collection in collections:
        if isinstance(collection, LazyDefinitions):
            continue  # built lazily with a context: Dagster's own merge reports its clashes
        for obj in [*(collection.assets or []), *(collection.asset_checks or [])]:
            for kind, name in _names(obj):
                yield kind, name, obj
        for obj in [*(collection.jobs or []), *(collection.schedules or [])]:
            yield "job, schedule or sensor name", obj.name, obj
        for obj in collection.sensors or []:
            yield "job, schedule or sensor name", obj.name, obj
        for key, resource in (collection.resources or {}).items():
            yield "resource", key, resource


def defs_modules(package: str) -> Iterator[ModuleType]:
    """``package`` and every module below it, imported in a stable order."""
    root = importlib.import_module(package)
    yield root
    for info in sorted(
        pkgutil.walk_packages(root.__path__, prefix=f"{package}."), key=lambda i: i.name
    ):
        yield importlib.import_module(info.name)


def check_unique_names(package: str) -> None:
    """Fail, naming both modules, when two modules under ``package`` claim one name.

    The same object seen again (a module re-exporting another's asset) is not a clash.
    """
    owners: dict[tuple[str, str], tuple[str, Any]] = {}
    for module in defs_modules(package):
        for kind, name, obj in _claims(module):
            first = owners.setdefault((kind, name), (module.__name__, obj))
            if first[1] is not obj:
                raise DuplicateDefinitionError(
                    f"{kind} {name!r} is defined twice: in {first[0]} and in {module.__name__}. "
                    "Rename one of them or delete the copy."
                )


def eager_until_requested(wait_for_deps_in_progress: bool = True) -> dg.AutomationCondition:
    """Dagster's ``eager()``, except that an upstream update is forgotten only once a run is
    requested for it, not when some run of the asset lands.

    With ``eager()``, data that lands upstream while this asset's run is in flight counts as
    handled when that run finishes, so it waits for the next upstream change (measured: 1 to 3
    of 15 upstream writes never reached the online store). Updates of deps made by the asset's
    own run still do not count (``any_deps_updated`` ignores them).

    ``wait_for_deps_in_progress=False`` drops ``eager()``'s ``~any_deps_in_progress``: the
    asset runs on what has landed, and again once the rebuild going on upstream lands. For a
    consumer of another location's long runs: with upstream changes every few seconds the dbt
    runs follow one another, and the Feast materialization, waiting for a gap between them, did
    not run for minutes (bench-freshness: no write online within 300 s). Within a location the
    wait stays: it keeps one dbt build from being split into runs that queue for the build lock.
    A run of the asset itself always blocks the next, so an asset has one run in flight.
    """
    condition = dg.AutomationCondition
    requested = (condition.newly_requested() | condition.initial_evaluation()).with_label(
        "requested"
    )
    due = (
        condition.in_latest_time_window()
        & (condition.newly_missing() | condition.any_deps_updated()).since(requested)
        & ~condition.any_deps_missing()
    )
    if wait_for_deps_in_progress:
        due = due & ~condition.any_deps_in_progress()
    return (due & ~condition.in_progress()).with_label("eager_until_requested")


def automation_sensor(location: str) -> dg.AutomationConditionSensorDefinition:
    """The sensor that evaluates automation conditions, RUNNING from the first deploy."""
    return dg.AutomationConditionSensorDefinition(
        f"{location}_automation",
        target=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=5,
    )


def _automated(defs: dg.Definitions) -> bool:
    return any(
        spec.automation_condition is not None
        for asset in defs.assets or []
        if isinstance(asset, dg.AssetsDefinition)
        for spec in asset.specs
    )


@suppress_dagster_warnings  # as load_from_defs_folder: its preview loaders warn on every load
def load_defs_folder(path_within_project: Path) -> dg.Definitions:
    """``dg.load_from_defs_folder`` without its plugin catalogue.

    The same component tree builds the ``defs`` folder and is attached to the result, as the
    loader does; left out are the catalogue of installed component types (the UI's list of
    plugins) and components created in the UI (app-managed: this platform's are all in git).
    """
    tree = dg.ComponentTree.for_project(path_within_project)
    return dg.Definitions.merge(
        tree.build_defs(tree.defs_module_path), dg.Definitions(component_tree=tree)
    )


def location_definitions(
    location: str,
    project_module_file: str,
    executor: dg.ExecutorDefinition = dg.in_process_executor,
) -> dg.Definitions:
    """Everything under the location's ``defs/``, checked, with the location's defaults.

    ``project_module_file`` is the calling ``definitions.py`` (``__file__``): its package's
    ``defs`` folder is loaded, and the dg project (``[tool.dg]`` in pyproject.toml) is found
    from there. A location that wants steps fanned out passes ``k8s_job_executor``.
    """
    package_dir = Path(project_module_file).resolve().parent
    check_unique_names(f"{package_dir.name}.defs")
    loaded = load_defs_folder(package_dir)
    extras: list[dg.SensorDefinition] = []
    if _automated(loaded) and not any(
        isinstance(s, dg.AutomationConditionSensorDefinition) for s in loaded.sensors or []
    ):
        extras.append(automation_sensor(location))
    return dg.Definitions.merge(loaded, dg.Definitions(sensors=extras, executor=executor))
