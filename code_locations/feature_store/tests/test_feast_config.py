"""feature_store.yaml: every connection from the environment, an unset variable named."""

import pytest
from data_platform import settings
from feature_store.feast_config import (
    DEFAULT_REPO_PATH,
    FeastConfigError,
    load_repo_config,
    placeholders,
)
from sqlalchemy.engine import make_url

CONTRACT = {
    settings.POSTGRES_HOST: "db.internal",
    settings.POSTGRES_PORT: "6543",
    settings.POSTGRES_USER: "feast user",
    settings.POSTGRES_PASSWORD: "p@ss/w:rd?#%",
    settings.WAREHOUSE_DB: "warehouse",
    settings.FEAST_REGISTRY_DB: "feast_registry",
    settings.REDIS_HOST: "redis.internal",
    settings.REDIS_PORT: "6380",
    settings.REDIS_PASSWORD: "s3cret=",
}


def test_every_connection_value_comes_from_the_contract():
    assert set(placeholders(DEFAULT_REPO_PATH)) == set(CONTRACT)
    config = load_repo_config(DEFAULT_REPO_PATH, CONTRACT)
    registry = make_url(config.registry.path)
    assert (registry.username, registry.password) == ("feast user", "p@ss/w:rd?#%")
    assert (registry.host, registry.port, registry.database) == (
        "db.internal",
        6543,
        "feast_registry",
    )
    offline = config.offline_store
    assert (offline.host, offline.port, offline.database, offline.db_schema) == (
        "db.internal", 6543, "warehouse", "gold",
    )  # fmt: skip
    assert offline.password == "p@ss/w:rd?#%"
    assert offline.sslmode == "prefer"  # Feast's default would be "require"
    assert config.online_store.connection_string == "redis.internal:6380,password=s3cret=,db=0"
    assert config.registry.serve_features_while_materializing


@pytest.mark.parametrize("missing", [settings.REDIS_PASSWORD, settings.FEAST_REGISTRY_DB])
def test_an_unset_variable_is_named(missing):
    environ = {k: v for k, v in CONTRACT.items() if k != missing}
    with pytest.raises(FeastConfigError, match=f"needs the environment variable\\(s\\) {missing},"):
        load_repo_config(DEFAULT_REPO_PATH, environ)


def test_a_comma_in_the_redis_password_is_refused():
    with pytest.raises(FeastConfigError, match="REDIS_PASSWORD contains a comma"):
        load_repo_config(DEFAULT_REPO_PATH, {**CONTRACT, settings.REDIS_PASSWORD: "a,b"})


def test_a_missing_repo_says_which_variable_to_set(tmp_path):
    with pytest.raises(FeastConfigError, match="set FEAST_REPO_PATH"):
        load_repo_config(tmp_path, CONTRACT)


def test_the_asset_fails_naming_the_unset_variable(
    feast_env, run_feature_store, step_error, monkeypatch
):
    monkeypatch.delenv(settings.POSTGRES_PASSWORD)
    result = run_feature_store()
    assert not result.success
    assert "needs the environment variable(s) POSTGRES_PASSWORD, which are not set" in step_error(
        result
    )
