"""The freshness sensor against the real dev upstream and Postgres: it launches ingestion
only when the upstream has rows after the stored cursors, and never while a run is in flight."""

import dagster as dg
from ingestion.defs.sensors.journal_app import JOB, ingest_journal_app_on_change


def evaluate(instance: dg.DagsterInstance, warehouse, client) -> dg.RunRequest | dg.SkipReason:
    context = dg.build_sensor_context(
        instance=instance, resources={"postgres": warehouse, "journal_api": client}
    )
    result = ingest_journal_app_on_change(context)
    assert isinstance(result, dg.RunRequest | dg.SkipReason), result
    return result


def test_the_sensor_launches_ingestion_only_when_the_upstream_changed(
    start_journal_api, ingest, warehouse, client_for
):
    api = start_journal_api(users=10, entries=200)
    client = client_for(api)
    with dg.instance_for_test() as instance:
        first = evaluate(instance, warehouse, client)  # never loaded: everything is new
        assert isinstance(first, dg.RunRequest)
        assert set(first.tags["ingestion/changed"].split(",")) >= {"users", "journal_entries"}

        assert ingest(api).success
        idle = evaluate(instance, warehouse, client)
        assert isinstance(idle, dg.SkipReason)
        assert "nothing upstream" in (idle.skip_message or "")

        api.advance(changed_entries=1)
        changed = evaluate(instance, warehouse, client)
        assert isinstance(changed, dg.RunRequest)
        assert changed.tags["ingestion/changed"] == "journal_entries"

        api.delete("journal_entries", 3)
        assert "deletions" in evaluate(instance, warehouse, client).tags["ingestion/changed"]  # type: ignore[union-attr]

        assert ingest(api).success
        assert isinstance(evaluate(instance, warehouse, client), dg.SkipReason)


@dg.op
def nothing() -> None:
    pass


@dg.job(name=JOB)
def stand_in() -> None:
    """A run of the job's name in the instance, as the daemon would have started it."""
    nothing()


def test_no_second_run_while_one_is_in_flight(start_journal_api, warehouse, client_for):
    api = start_journal_api(users=5, entries=20)
    with dg.instance_for_test() as instance:
        running = instance.create_run_for_job(stand_in, status=dg.DagsterRunStatus.STARTED)
        skipped = evaluate(instance, warehouse, client_for(api))
        assert isinstance(skipped, dg.SkipReason)
        assert running.run_id in (skipped.skip_message or "")


def test_a_recent_failure_holds_the_next_launch_back(start_journal_api, warehouse, client_for):
    api = start_journal_api(users=5, entries=20)  # never loaded: changes waiting
    with dg.instance_for_test() as instance:
        failed = instance.create_run_for_job(stand_in, status=dg.DagsterRunStatus.FAILURE)
        skipped = evaluate(instance, warehouse, client_for(api))
        assert isinstance(skipped, dg.SkipReason)
        assert f"run {failed.run_id}" in (skipped.skip_message or "")
        assert "failed less than" in (skipped.skip_message or "")


def test_an_unreachable_upstream_skips_the_tick_naming_it(warehouse, client_for):
    from data_platform_dev.stack.processes import free_port
    from ingestion.journal_api import JournalApiResource

    client = JournalApiResource(base_url=f"http://127.0.0.1:{free_port()}")
    with dg.instance_for_test() as instance:
        skipped = evaluate(instance, warehouse, client)
    assert isinstance(skipped, dg.SkipReason)
    assert "did not answer" in (skipped.skip_message or "")
