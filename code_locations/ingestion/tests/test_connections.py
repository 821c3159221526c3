"""Every warehouse connection has TCP keepalives; timeouts apply when configured."""

import psycopg


def test_connections_have_keepalives_and_optional_timeouts(warehouse):
    params = psycopg.conninfo.conninfo_to_dict(warehouse.conninfo())
    assert (params["keepalives"], params["keepalives_idle"], params["keepalives_count"]) == (
        "1",
        "30",
        "3",
    )
    assert "options" not in params  # no timeout unless asked: dbt and Feast reads are long

    bounded = warehouse.model_copy(
        update={"lock_timeout_seconds": 2, "statement_timeout_seconds": 1.5}
    )
    with bounded.connect() as conn:
        assert conn.execute("SHOW lock_timeout").fetchone() == ("2s",)
        assert conn.execute("SHOW statement_timeout").fetchone() == ("1500ms",)
        assert conn.execute("SELECT 1").fetchone() == (1,)
