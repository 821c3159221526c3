"""The discovery helper: what a location's folders contain is what its Definitions hold."""

import dagster as dg
import pytest
from data_platform.discovery import DuplicateDefinitionError, build_location_definitions

ASSET = """
import dagster as dg

@dg.asset
def {name}() -> None: ...
"""


def test_assets_are_found_in_nested_packages(make_location):
    package = make_location(
        {
            "assets/ingestion/api.py": ASSET.format(name="users"),
            "assets/transformations/deep/er/model.py": ASSET.format(name="model"),
            "assets/exports/parquet.py": ASSET.format(name="export"),
            "assets/internal/helpers.py": "HELPER = 1\n",
        }
    )
    defs = build_location_definitions("test", package)
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys == {"users", "model", "export"}


def test_jobs_schedules_sensors_and_resources_need_no_imports(make_location):
    package = make_location(
        {
            "assets/a.py": ASSET.format(name="a"),
            "jobs/a_job.py": """
                import dagster as dg
                a_job = dg.define_asset_job("a_job", selection="a")
                a_daily = dg.ScheduleDefinition(name="a_daily", job=a_job, cron_schedule="0 0 * * *")
                """,
            "jobs/op_jobs.py": """
                import dagster as dg

                @dg.op
                def noop() -> None: ...

                @dg.job
                def op_job() -> None:
                    noop()

                @dg.sensor(job=op_job)
                def watch(context):
                    return None
                """,
            "resources/stores.py": """
                import dagster as dg

                class Store(dg.ConfigurableResource):
                    url: str = "x"

                store = Store()
                legacy = dg.ResourceDefinition.hardcoded_resource(42)
                _private = Store(url="hidden")
                """,
        }
    )
    defs = build_location_definitions("test", package)
    assert defs.resolve_job_def("a_job") and defs.resolve_job_def("op_job")
    assert defs.resolve_schedule_def("a_daily").cron_schedule == "0 0 * * *"
    assert defs.resolve_sensor_def("watch").name == "watch"
    assert set(defs.resources or {}) == {"store", "legacy"}
    dg.Definitions.validate_loadable(defs)


def test_a_reexported_object_is_not_a_duplicate(make_location):
    package = make_location(
        {
            "assets/one.py": ASSET.format(name="shared"),
            "assets/two.py": "from ..assets.one import shared\n",
        }
    )
    defs = build_location_definitions("test", package)
    assert [k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()] == [
        "shared"
    ]


@pytest.mark.parametrize(
    ("files", "what"),
    [
        (
            {
                "assets/a/one.py": ASSET.format(name="twin"),
                "assets/b/two.py": ASSET.format(name="twin"),
            },
            "asset key 'twin'",
        ),
        (
            {
                "jobs/one.py": "import dagster as dg\nj = dg.define_asset_job('twin_job')\n",
                "jobs/two.py": "import dagster as dg\nk = dg.define_asset_job('twin_job')\n",
            },
            "job, schedule or sensor name 'twin_job'",
        ),
        (
            {
                "resources/one.py": "import dagster as dg\npostgres = dg.ResourceDefinition.none_resource()\n",
                "resources/two.py": "import dagster as dg\npostgres = dg.ResourceDefinition.none_resource()\n",
            },
            "resource 'postgres'",
        ),
    ],
    ids=["asset", "job", "resource"],
)
def test_a_duplicate_name_fails_with_both_module_paths(make_location, files, what):
    package = make_location(files)
    with pytest.raises(DuplicateDefinitionError) as error:
        build_location_definitions("test", package)
    message = str(error.value)
    assert what in message
    first, second = sorted(files)
    as_module = lambda path: f"{package}." + path.removesuffix(".py").replace("/", ".")  # noqa: E731
    assert as_module(first) in message and as_module(second) in message


def test_automated_assets_get_a_running_sensor(make_location):
    package = make_location(
        {
            "assets/auto.py": """
                import dagster as dg

                @dg.asset(automation_condition=dg.AutomationCondition.eager())
                def follows() -> None: ...
                """
        }
    )
    sensor = build_location_definitions("demo", package).resolve_sensor_def("demo_automation")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


def test_an_import_error_inside_a_location_is_not_swallowed(make_location):
    package = make_location({"assets/broken.py": "import not_a_module_anywhere\n"})
    with pytest.raises(ModuleNotFoundError, match="not_a_module_anywhere"):
        build_location_definitions("test", package)
