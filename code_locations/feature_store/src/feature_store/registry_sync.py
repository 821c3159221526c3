"""Bring the Feast registry in line with feast_repo, the way ``feast apply`` does.

``FeatureStore.apply`` only adds and updates; objects deleted from the repo would linger in
the registry (and their rows in Redis). Here the registry is diffed against the repo first:
nothing is written when nothing changed, and removed objects are deleted with their online
tables. Callers hold the registry lock, so two applies never interleave.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from feast import FeatureStore
from feast.diff.property_diff import TransitionType
from feast.diff.registry_diff import FeastObjectDiff
from feast.feature_view import DUMMY_ENTITY_NAME
from feast.infra.registry.registry import FeastObjectType
from feast.repo_contents import RepoContents
from feast.repo_operations import extract_objects_for_apply_delete
from google.protobuf.message import Message


@dataclass
class RegistryChanges:
    """What an apply changed, as (object type, name) pairs, e.g. ("feature view", "x")."""

    created: list[tuple[str, str]] = field(default_factory=list)
    updated: list[tuple[str, str]] = field(default_factory=list)
    deleted: list[tuple[str, str]] = field(default_factory=list)

    @property
    def any(self) -> bool:
        return bool(self.created or self.updated or self.deleted)

    def changed_feature_views(self) -> set[str]:
        """Views whose rows in Redis may have the wrong shape: they need a full materialization."""
        kind = FeastObjectType.FEATURE_VIEW.value
        return {name for t, name in self.created + self.updated if t == kind}

    def summary(self) -> str:
        if not self.any:
            return "registry already matches feast_repo"
        parts = [
            f"{verb} " + ", ".join(f"{t} {name}" for t, name in sorted(objects))
            for verb, objects in (
                ("created", self.created),
                ("updated", self.updated),
                ("deleted", self.deleted),
            )
            if objects
        ]
        return "; ".join(parts)


def _without_meta(value: Any) -> Any:
    """A proto value without its ``meta`` timestamps, which differ on every repo import."""
    if isinstance(value, Message):
        value = copy.deepcopy(value)
        if "meta" in value.DESCRIPTOR.fields_by_name:
            value.ClearField("meta")
    return value


def _changed(diff: FeastObjectDiff) -> bool:
    """Feast reports a data source's fresh creation time as an update: ignore ``meta``."""
    return any(
        _without_meta(p.val_existing) != _without_meta(p.val_declared)
        for p in diff.feast_object_property_diffs
        if p.property_name != "meta"
    )


def plan(store: FeatureStore, repo: RepoContents) -> RegistryChanges:
    """The registry changes applying ``repo`` would make (validates the definitions too)."""
    registry_diff, _, _ = store.plan(repo)
    changes = RegistryChanges()
    for diff in registry_diff.feast_object_diffs:
        if diff.name == DUMMY_ENTITY_NAME:
            continue
        label = (diff.feast_object_type.value, diff.name)
        if diff.transition_type == TransitionType.CREATE:
            changes.created.append(label)
        elif diff.transition_type == TransitionType.UPDATE and _changed(diff):
            changes.updated.append(label)
        elif diff.transition_type == TransitionType.DELETE:
            changes.deleted.append(label)
    return changes


def apply(store: FeatureStore, repo: RepoContents) -> RegistryChanges:
    """Apply ``repo`` when it differs from the registry, deleting what the repo dropped."""
    changes = plan(store, repo)
    if not changes.any:
        return changes
    to_apply, to_delete, _, _ = extract_objects_for_apply_delete(
        store.project, store.registry, repo
    )
    store.apply(to_apply, objects_to_delete=to_delete, partial=False)
    return changes
