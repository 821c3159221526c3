"""FeastResource: a FeatureStore configured from feast_repo and the environment."""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg
from pydantic import Field

if TYPE_CHECKING:  # Feast takes seconds to import: the code server loads without it
    from feast import FeatureStore
    from feast.repo_config import RepoConfig
    from feast.repo_contents import RepoContents


class FeastResource(dg.ConfigurableResource):
    """The Feast repository and the stores its feature_store.yaml names.

    Connections come from the environment variables that feature_store.yaml names (the same
    file the feature server reads); an unset one fails when the store is opened, naming it.
    """

    repo_path: str = Field(
        default="",
        description="feast_repo directory; empty means $FEAST_REPO_PATH, else the checkout's",
    )

    def config(self) -> RepoConfig:
        from feature_store.feast_config import load_repo_config

        return load_repo_config(self.repo_path or None)

    def feature_store(self) -> FeatureStore:
        from feature_store.feast_config import open_feature_store

        return open_feature_store(self.repo_path or None)

    def repo_contents(self, store: FeatureStore) -> RepoContents:
        """What feast_repo declares now, read from its files."""
        from feature_store.repo_contents import load_repo_contents

        return load_repo_contents(store.config.repo_path, store.project)
