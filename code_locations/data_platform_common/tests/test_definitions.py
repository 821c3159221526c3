"""The definitions helper: whatever a location's defs/ folder holds is what its Definitions hold,
loaded by Dagster's own loader, with clashes named by module."""

import dagster as dg
import pytest
from data_platform.definitions import (
    DuplicateDefinitionError,
    eager_until_requested,
    location_definitions,
)

ASSET = """
import dagster as dg

@dg.asset
def {name}() -> None: ...
"""

JOB = """
import dagster as dg

{var} = dg.define_asset_job("{name}")
"""

RESOURCE = """
import dagster as dg

defs = dg.Definitions(resources={{"{name}": dg.ResourceDefinition.none_resource()}})
"""


def keys(defs: dg.Definitions) -> set[str]:
    return {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}


def test_assets_are_found_in_nested_packages(make_location):
    definitions_file = make_location(
        {
            "defs/assets/ingestion/api.py": ASSET.format(name="users"),
            "defs/assets/transformations/deep/er/model.py": ASSET.format(name="model"),
            "defs/assets/exports/parquet.py": ASSET.format(name="export"),
            "defs/assets/internal/helpers.py": "HELPER = 1\n",
        }
    )
    assert keys(location_definitions("test", str(definitions_file))) == {"users", "model", "export"}


def test_anything_anywhere_under_defs_loads(make_location):
    """A job in an assets module and an asset in a jobs module load too (the old scanner dropped
    them); resources come from a module's Definitions object."""
    definitions_file = make_location(
        {
            "defs/assets/a.py": ASSET.format(name="a")
            + "\na_job = dg.define_asset_job('a_job', selection='a')\n"
            + "a_daily = dg.ScheduleDefinition(name='a_daily', job=a_job, cron_schedule='0 0 * * *')\n",
            "defs/jobs/more.py": ASSET.format(name="b")
            + """
@dg.op
def noop() -> None: ...

@dg.job
def op_job() -> None:
    noop()

@dg.sensor(job=op_job)
def watch(context):
    return None
""",
            "defs/resources/stores.py": RESOURCE.format(name="store"),
        }
    )
    defs = location_definitions("test", str(definitions_file))
    assert keys(defs) == {"a", "b"}
    assert defs.resolve_job_def("a_job") and defs.resolve_job_def("op_job")
    assert defs.resolve_schedule_def("a_daily").cron_schedule == "0 0 * * *"
    assert defs.resolve_sensor_def("watch").name == "watch"
    assert set(defs.resources or {}) == {"store"}
    assert defs.executor is dg.in_process_executor
    dg.Definitions.validate_loadable(defs)


def test_a_reexported_object_is_not_a_duplicate(make_location):
    definitions_file = make_location(
        {
            "defs/one.py": ASSET.format(name="shared"),
            "defs/two.py": "from .one import shared\n",
        }
    )
    assert keys(location_definitions("test", str(definitions_file))) == {"shared"}


@pytest.mark.parametrize(
    ("files", "what"),
    [
        (
            {
                "defs/assets/a/one.py": ASSET.format(name="twin"),
                "defs/jobs/two.py": ASSET.format(name="twin"),
            },
            "asset key 'twin'",
        ),
        (
            {
                "defs/jobs/one.py": JOB.format(var="j", name="twin_job"),
                "defs/jobs/two.py": JOB.format(var="k", name="twin_job"),
            },
            "job, schedule or sensor name 'twin_job'",
        ),
        (
            {
                "defs/resources/one.py": RESOURCE.format(name="postgres"),
                "defs/resources/two.py": RESOURCE.format(name="postgres"),
            },
            "resource 'postgres'",
        ),
    ],
    ids=["asset", "job", "resource"],
)
def test_a_duplicate_name_fails_with_both_module_paths(make_location, files, what):
    """Dagster's own errors ("Duplicate asset key", a component tree for resources) do not say
    which modules clash; this one names both."""
    definitions_file = make_location(files)
    with pytest.raises(DuplicateDefinitionError) as error:
        location_definitions("test", str(definitions_file))
    message = str(error.value)
    assert what in message
    package = definitions_file.parent.name
    for path in files:
        assert f"{package}." + path.removesuffix(".py").replace("/", ".") in message


def test_a_definitions_object_beside_loose_definitions_is_refused(make_location):
    """Dagster's loader would keep the Definitions object and drop the asset without a word."""
    definitions_file = make_location(
        {"defs/mixed.py": ASSET.format(name="lost") + RESOURCE.format(name="store")}
    )
    with pytest.raises(DuplicateDefinitionError, match=r"defs\.mixed holds a Definitions object"):
        location_definitions("test", str(definitions_file))


def test_automated_assets_get_a_running_sensor(make_location):
    definitions_file = make_location(
        {
            "defs/auto.py": """
                import dagster as dg

                @dg.asset(automation_condition=dg.AutomationCondition.eager())
                def follows() -> None: ...
                """
        }
    )
    sensor = location_definitions("demo", str(definitions_file)).resolve_sensor_def(
        "demo_automation"
    )
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


def test_no_automation_sensor_without_automated_assets(make_location):
    definitions_file = make_location({"defs/plain.py": ASSET.format(name="plain")})
    defs = location_definitions("demo", str(definitions_file))
    assert not list(defs.sensors or [])


def test_an_import_error_inside_a_location_is_not_swallowed(make_location):
    definitions_file = make_location({"defs/broken.py": "import not_a_module_anywhere\n"})
    with pytest.raises(ModuleNotFoundError, match="not_a_module_anywhere"):
        location_definitions("test", str(definitions_file))


def test_an_update_landing_during_a_run_is_not_forgotten():
    """Upstream data that lands while the downstream run is in flight makes it due again once
    that run is done; Dagster's eager() loses it (asserted here, so the reason stays true)."""

    @dg.asset
    def upstream() -> None: ...

    def due_after_a_run_that_overlapped_an_update(condition: dg.AutomationCondition) -> bool:
        @dg.asset(deps=[upstream], automation_condition=condition)
        def downstream() -> None: ...

        defs = dg.Definitions(assets=[upstream, downstream])
        instance = dg.DagsterInstance.ephemeral()
        idle = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        dg.materialize([upstream], instance=instance)
        requested = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, cursor=idle.cursor
        )
        assert {r.key for r in requested.results if r.true_subset.size} == {downstream.key}
        running = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, cursor=requested.cursor
        )
        dg.materialize([upstream], instance=instance)  # new data while downstream runs
        dg.materialize(
            [downstream, upstream.to_source_asset()], instance=instance, selection=[downstream]
        )  # ... then downstream's run (requested before that data) lands
        after = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, cursor=running.cursor
        )
        return any(r.key == downstream.key and r.true_subset.size for r in after.results)

    assert due_after_a_run_that_overlapped_an_update(eager_until_requested())
    assert not due_after_a_run_that_overlapped_an_update(dg.AutomationCondition.eager())


def test_a_consumer_of_long_upstream_runs_takes_what_landed_while_the_next_one_runs():
    """Without the wait, downstream runs on what has landed even while the next upstream run
    is going; Dagster's eager() waits for a gap between upstream runs, which a busy upstream
    never leaves."""
    from dagster._core.execution.api import create_execution_plan

    @dg.asset
    def upstream() -> None: ...

    def due_while_upstream_reruns(condition: dg.AutomationCondition) -> bool:
        @dg.asset(deps=[upstream], automation_condition=condition)
        def downstream() -> None: ...

        defs = dg.Definitions(
            assets=[upstream, downstream], jobs=[dg.define_asset_job("upstream_job", [upstream])]
        )
        instance = dg.DagsterInstance.ephemeral()
        idle = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        dg.materialize([upstream], instance=instance)  # new data landed ...
        job = defs.resolve_job_def("upstream_job")
        instance.create_run_for_job(  # ... and the next upstream run is going
            job,
            asset_selection=frozenset({upstream.key}),
            execution_plan=create_execution_plan(job),
            status=dg.DagsterRunStatus.STARTED,
        )
        after = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=idle.cursor)
        return any(r.key == downstream.key and r.true_subset.size for r in after.results)

    assert due_while_upstream_reruns(eager_until_requested(wait_for_deps_in_progress=False))
    assert not due_while_upstream_reruns(eager_until_requested())
    assert not due_while_upstream_reruns(dg.AutomationCondition.eager())
