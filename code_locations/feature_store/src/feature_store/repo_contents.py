"""The Feast objects that feast_repo declares, read fresh from its files on every call.

Feast's own parser imports the repo's files as top-level modules relative to the working
directory and keeps them in ``sys.modules``, so a long-lived process (a code server, a test
session) would apply yesterday's definitions. Here the files are imported the way ``feast
apply`` imports them (the repo on ``sys.path``, so ``from entities import ...`` works) and are
forgotten again afterwards.
"""

from __future__ import annotations

import importlib
import sys
import threading
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, OnDemandFeatureView, StreamFeatureView
from feast.data_source import DataSource
from feast.feature_view import DUMMY_ENTITY
from feast.permissions.permission import Permission
from feast.project import Project
from feast.repo_contents import RepoContents
from feast.repo_operations import get_repo_files

# sys.path and sys.modules are process-wide: two loads at once would see each other's modules
_IMPORT_LOCK = threading.Lock()
# kinds we do not use yet: refuse them rather than let apply delete them as "removed"
_UNSUPPORTED = (StreamFeatureView, OnDemandFeatureView, Permission)


def _module_names(path: Path) -> list[str]:
    root = path.resolve()
    return [".".join(f.relative_to(root).with_suffix("").parts) for f in get_repo_files(root)]


def _forget(path: Path) -> None:
    root = str(path.resolve())
    for name, module in list(sys.modules.items()):
        if (getattr(module, "__file__", None) or "").startswith(root + "/"):
            del sys.modules[name]


def load_repo_contents(path: Path, project: str) -> RepoContents:
    """Entities, data sources, feature views and feature services of the repo at ``path``."""
    contents = RepoContents(
        projects=[],
        data_sources=[],
        entities=[],
        feature_views=[],
        feature_services=[],
        on_demand_feature_views=[],
        stream_feature_views=[],
        label_views=[],
        permissions=[],
    )
    seen: set[int] = set()

    def add(bucket: list, obj: object) -> None:  # type: ignore[type-arg]
        if id(obj) not in seen:
            seen.add(id(obj))
            bucket.append(obj)

    with _IMPORT_LOCK:
        root = str(path.resolve())
        _forget(path)
        sys.path.insert(0, root)
        written = sys.dont_write_bytecode
        sys.dont_write_bytecode = True  # the image's root filesystem is read-only
        try:
            for name in _module_names(path):
                module = importlib.import_module(name)
                if not (module.__file__ or "").startswith(root + "/"):
                    raise ImportError(
                        f"feast_repo's module {name!r} resolves to {module.__file__}, another "
                        "module of that name imported earlier: rename the file in feast_repo."
                    )
                for attribute, obj in vars(module).items():
                    if isinstance(obj, _UNSUPPORTED):
                        raise TypeError(
                            f"{name}.{attribute} is a {type(obj).__name__}, which this loader "
                            "does not apply yet; extend feature_store.repo_contents first, or "
                            "apply would delete it from the registry."
                        )
                    if isinstance(obj, FeatureView):
                        add(contents.feature_views, obj)
                        if obj.batch_source is not None:
                            add(contents.data_sources, obj.batch_source)
                    elif isinstance(obj, Entity):
                        add(contents.entities, obj)
                    elif isinstance(obj, FeatureService):
                        add(contents.feature_services, obj)
                    elif isinstance(obj, DataSource):
                        add(contents.data_sources, obj)
                    elif isinstance(obj, Project):
                        add(contents.projects, obj)
        finally:
            sys.dont_write_bytecode = written
            sys.path.remove(root)
            _forget(path)
    if not contents.projects:
        contents.projects.append(Project(name=project))
    contents.entities.append(DUMMY_ENTITY)
    return contents
