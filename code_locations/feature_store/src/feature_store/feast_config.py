"""feature_store.yaml read with its ``${VAR}`` placeholders checked, not silently kept.

Feast expands ``${VAR}`` with ``os.path.expandvars``: an unset variable stays as literal text
and surfaces later as a confusing connection error. Here every placeholder must be set, values
inside the registry URL are URL-encoded (a password may hold ``@`` or ``/``), and values Feast
cannot carry (a comma in the Redis connection string) are refused with the variable's name.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml
from data_platform import settings
from feast import FeatureStore
from feast.repo_config import RepoConfig

FEAST_REPO_PATH = settings.FEAST_REPO_PATH
FEATURE_STORE_YAML = "feature_store.yaml"
# the image and a checkout share the layout: <root>/code_locations/feature_store/src/feature_store
DEFAULT_REPO_PATH = Path(__file__).resolve().parents[4] / "feast_repo"

# values that Feast's strict config models want as numbers (the environment holds text)
_INTEGER_FIELDS = {"offline_store.port"}
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class FeastConfigError(RuntimeError):
    """feature_store.yaml cannot be turned into a working configuration; the message says why."""


def repo_path(configured: str | os.PathLike[str] | None = None) -> Path:
    """The Feast repository: the argument, else ``FEAST_REPO_PATH``, else the repo's feast_repo."""
    path = Path(configured or os.environ.get(FEAST_REPO_PATH) or DEFAULT_REPO_PATH)
    if not (path / FEATURE_STORE_YAML).is_file():
        raise FeastConfigError(
            f"no {FEATURE_STORE_YAML} in {path}: set {FEAST_REPO_PATH} to the feast_repo "
            "directory (the image keeps it at /app/feast_repo)."
        )
    return path


def _strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for value in node.values() for s in _strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in _strings(value)]
    return [node] if isinstance(node, str) else []


def placeholders(path: Path) -> list[str]:
    """The environment variables feature_store.yaml needs (comments aside), in order of use."""
    raw = yaml.safe_load((path / FEATURE_STORE_YAML).read_text())
    names = [name for text in _strings(raw) for name in _PLACEHOLDER.findall(text)]
    return list(dict.fromkeys(names))


def _substitute(value: str, environ: Mapping[str, str], where: str) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        text = environ[name]
        if where == "registry.path":
            return quote(text, safe="")
        if where == "online_store.connection_string" and "," in text:
            raise FeastConfigError(
                f"{name} contains a comma, which Feast's Redis connection string cannot carry "
                "(it separates options). Choose a value without commas."
            )
        return text

    return _PLACEHOLDER.sub(replace, value)


def _resolve(node: Any, environ: Mapping[str, str], where: str = "") -> Any:
    if isinstance(node, dict):
        return {k: _resolve(v, environ, f"{where}.{k}" if where else k) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, environ, where) for v in node]
    if isinstance(node, str):
        resolved = _substitute(node, environ, where)
        if where in _INTEGER_FIELDS:
            try:
                return int(resolved)
            except ValueError:
                raise FeastConfigError(f"{where} must be a port number, got {resolved!r}") from None
        return resolved
    return node


def load_repo_config(
    configured_path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> RepoConfig:
    """Feast's RepoConfig from feature_store.yaml, every placeholder filled from ``environ``."""
    path = repo_path(configured_path)
    environ = os.environ if environ is None else environ
    missing = [name for name in placeholders(path) if name not in environ]
    if missing:
        raise FeastConfigError(
            f"{path / FEATURE_STORE_YAML} needs the environment variable(s) "
            f"{', '.join(missing)}, which are not set. The local stack and the Helm values "
            "(ConfigMap data-platform-env, Secret data-platform-credentials) set them; "
            "export them when you run Feast by hand."
        )
    raw = yaml.safe_load((path / FEATURE_STORE_YAML).read_text())
    config = RepoConfig(**_resolve(raw, environ))
    config.repo_path = path
    return config


def open_feature_store(
    configured_path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> FeatureStore:
    """A FeatureStore on the SQL registry, its first-use table creation serialized."""
    from feature_store.registry_lock import registry_lock

    config = load_repo_config(configured_path, environ)
    # the SQL registry creates its tables when it is built; two processes doing so collide
    with registry_lock(config.registry.path, "init"):
        return FeatureStore(config=config)
