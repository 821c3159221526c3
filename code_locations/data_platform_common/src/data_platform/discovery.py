"""Auto-discovery of a code location's definitions, owned in one place.

Every module under a location's ``assets/`` (recursively), ``jobs/`` and ``resources/`` is
imported and scanned, so adding a file is all it takes to add an asset, a job or a resource:
no import lists to keep in ``__init__.py``. Two different objects claiming the same asset key,
job/schedule/sensor name or resource key fail the load with both module paths in the message.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import (
    UnresolvedAssetJobDefinition,
)


class DuplicateDefinitionError(Exception):
    """Two modules define the same asset key, job, schedule, sensor or resource name."""


@dataclass
class _Registry:
    """Collects discovered objects and rejects a name claimed twice by different objects."""

    what: str
    owners: dict[str, tuple[str, Any]] = field(default_factory=dict)

    def claim(self, name: str, module: str, obj: Any) -> bool:
        """Record that ``module`` defines ``name``; False when this very object was seen already."""
        if name in self.owners:
            first_module, first = self.owners[name]
            if first is obj:
                return False
            raise DuplicateDefinitionError(
                f"{self.what} {name!r} is defined twice: in {first_module} and in {module}. "
                "Rename one of them or delete the copy."
            )
        self.owners[name] = (module, obj)
        return True


def iter_modules(package_name: str) -> Iterator[ModuleType]:
    """Import a package and every module below it, depth first, in a stable order."""
    package = importlib.import_module(package_name)
    yield package
    if not hasattr(package, "__path__"):
        return
    for info in sorted(
        pkgutil.walk_packages(package.__path__, prefix=f"{package_name}."), key=lambda i: i.name
    ):
        yield importlib.import_module(info.name)


def _optional_modules(package_name: str) -> Iterable[ModuleType]:
    try:
        importlib.import_module(package_name)
    except ModuleNotFoundError as error:
        if error.name == package_name:
            return []
        raise
    return list(iter_modules(package_name))


def _members(module: ModuleType) -> Iterator[tuple[str, Any]]:
    yield from sorted(vars(module).items())


@dataclass
class LocationContents:
    assets: list[Any] = field(default_factory=list)
    asset_checks: list[dg.AssetChecksDefinition] = field(default_factory=list)
    jobs: list[dg.JobDefinition | UnresolvedAssetJobDefinition] = field(default_factory=list)
    schedules: list[dg.ScheduleDefinition] = field(default_factory=list)
    sensors: list[dg.SensorDefinition] = field(default_factory=list)
    resources: dict[str, Any] = field(default_factory=dict)


def discover(package_name: str) -> LocationContents:
    """Scan ``<package>.assets``, ``<package>.jobs`` and ``<package>.resources``."""
    found = LocationContents()
    asset_keys = _Registry("asset key")
    check_keys = _Registry("asset check")
    job_names = _Registry("job, schedule or sensor name")
    resource_keys = _Registry("resource")

    for module in _optional_modules(f"{package_name}.assets"):
        where = module.__name__
        for _, obj in _members(module):
            if isinstance(obj, dg.AssetChecksDefinition):
                claims = [check_keys.claim(str(key), where, obj) for key in obj.check_keys]
                target: list[Any] = found.asset_checks
            elif isinstance(obj, dg.AssetsDefinition):
                claims = [asset_keys.claim(key.to_user_string(), where, obj) for key in obj.keys]
                target = found.assets
            elif isinstance(obj, dg.AssetSpec | dg.SourceAsset):
                claims = [asset_keys.claim(obj.key.to_user_string(), where, obj)]
                target = found.assets
            else:
                continue
            if all(claims):
                target.append(obj)

    job_kinds: list[tuple[Any, list[Any]]] = [
        (dg.JobDefinition | UnresolvedAssetJobDefinition, found.jobs),
        (dg.ScheduleDefinition, found.schedules),
        (dg.SensorDefinition, found.sensors),
    ]
    for module in _optional_modules(f"{package_name}.jobs"):
        for _, obj in _members(module):
            for kind, target in job_kinds:
                if isinstance(obj, kind) and job_names.claim(obj.name, module.__name__, obj):
                    target.append(obj)

    for module in _optional_modules(f"{package_name}.resources"):
        for name, obj in _members(module):
            resource = isinstance(obj, dg.ConfigurableResource | dg.ResourceDefinition)
            if (
                resource
                and not name.startswith("_")
                and resource_keys.claim(name, module.__name__, obj)
            ):
                found.resources[name] = obj
    return found


def automation_sensor(location: str) -> dg.AutomationConditionSensorDefinition:
    """The sensor that evaluates automation conditions, running from the first deploy.

    Dagster's implicit default sensor starts STOPPED, which would leave cross-location
    automation waiting for a click in the UI.
    """
    return dg.AutomationConditionSensorDefinition(
        f"{location}_automation",
        target=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=5,
    )


def build_location_definitions(
    location: str, package_name: str, executor: dg.ExecutorDefinition = dg.in_process_executor
) -> dg.Definitions:
    """The one ``Definitions`` of a code location, from what its folders contain.

    Steps run in the run's own process by default: a run is already its own process (a
    Kubernetes Job in production), and a subprocess per step would import the location again
    for every asset. A location that wants steps fanned out passes ``k8s_job_executor``.
    """
    found = discover(package_name)
    sensors = list(found.sensors)
    automated = any(
        getattr(spec, "automation_condition", None) is not None
        for asset in found.assets
        if isinstance(asset, dg.AssetsDefinition)
        for spec in asset.specs
    )
    if automated and not any(
        isinstance(s, dg.AutomationConditionSensorDefinition) for s in sensors
    ):
        sensors.append(automation_sensor(location))
    return dg.Definitions(
        assets=found.assets,
        asset_checks=found.asset_checks,
        jobs=found.jobs,
        schedules=found.schedules,
        sensors=sensors,
        resources=found.resources,
        executor=executor,
    )
