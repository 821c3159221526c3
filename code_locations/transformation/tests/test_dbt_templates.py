"""dbt's templates compiled once per manifest (dbt_templates.py): builds parse no macro or
model from Jinja source, and a changed source is never served the code of the old one."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime

# A build in a fresh process, as a run worker: every Jinja source dbt parses is recorded (a
# template served from the cache is not parsed).
COUNTED_BUILD = """
import json, os, sys
from datetime import datetime
from data_platform.resources import PostgresResource
from dbt_common.clients import jinja
from transformation.dbt_config import dbt_cli

parsed = []
parse = jinja.MacroFuzzEnvironment._parse
def counted(self, source, name, filename):
    parsed.append(source)
    return parse(self, source, name, filename)
jinja.MacroFuzzEnvironment._parse = counted

env = os.environ
warehouse = PostgresResource(
    host=env["POSTGRES_HOST"], port=int(env["POSTGRES_PORT"]), user=env["POSTGRES_USER"],
    password=env["POSTGRES_PASSWORD"], database=env["WAREHOUSE_DB"], sslmode="disable",
)
cli = dbt_cli()
cli.prepare(warehouse.database)
as_of = datetime.fromisoformat(sys.argv[1])
args = cli.build_args(warehouse, as_of=as_of, changed_since=as_of)
events = list(cli.run_in_process(args, database=warehouse.database))
print(json.dumps({"events": len(events), "parsed": parsed}))
"""


def _build() -> dict:
    completed = subprocess.run(
        [sys.executable, "-c", COUNTED_BUILD, datetime.now(UTC).isoformat()],
        capture_output=True,
        text=True,
        check=False,
        env=os.environ,  # DBT_TARGET_PATH and the profile's variables (dbt_warehouse)
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_builds_compile_no_macro_or_model_and_keep_what_they_compile(chess_player) -> None:
    del chess_player  # the warehouse's variables are in the environment (dbt_warehouse)
    from transformation.dbt_resource import dbt_files
    from transformation.dbt_templates import (
        compile_templates,
        missing_templates,
        template_cache_dir,
    )
    from transformation.manifest import prepare_manifest

    manifest_path = prepare_manifest(dbt_files)  # a new manifest: no templates compiled
    assert not template_cache_dir(manifest_path).exists()
    assert missing_templates(manifest_path) > 500
    cache, count = compile_templates(manifest_path)
    assert missing_templates(manifest_path) == 0
    manifest = json.loads(manifest_path.read_text())
    from_manifest = {m["macro_sql"] for m in manifest["macros"].values()} | {
        n["raw_code"] for n in manifest["nodes"].values()
    }
    assert count > 500 and len(list(cache.iterdir())) > 500
    # an image's builds run as another user than the one that compiled at build
    assert all(p.stat().st_mode & stat.S_IROTH for p in cache.iterdir())

    first = _build()
    assert first["events"] > 20  # every model and test ran
    assert not set(first["parsed"]) & from_manifest, "a build compiled a macro or a model"
    # what the manifest does not hold (the profile's fields, the tests' arguments, dbt's
    # query comment) the first build compiles and keeps
    assert first["parsed"]
    second = _build()
    assert second["events"] > 20  # incremental now: the enforced tests skipped
    assert second["parsed"] == [], "the second build compiled what the first kept"


CHANGED_SOURCE = """
import sys
from pathlib import Path
from dbt_common.clients.jinja import get_template
from transformation.dbt_templates import use_compiled_templates

use_compiled_templates(Path(sys.argv[1]))
template = "{% set answer = 6 * 7 %}{{ answer }}"
print(get_template(template, {}).render({}))
print(get_template(template.replace("6 * 7", "6 * 8"), {}).render({}))
print(get_template(template, {}).render({}))
"""


def test_a_changed_template_compiles_anew_and_an_unwritable_cache_only_costs_time(
    tmp_path,
) -> None:
    def run(directory) -> list[str]:
        completed = subprocess.run(
            [sys.executable, "-c", CHANGED_SOURCE, str(directory)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert completed.returncode == 0, completed.stderr[-3000:]
        return completed.stdout.split()

    cache = tmp_path / "jinja"
    assert run(cache) == ["42", "48", "42"]
    kept = sorted(p.name for p in cache.iterdir())
    assert len(kept) == 2
    assert run(cache) == ["42", "48", "42"]  # read back, not compiled: the same two files
    assert sorted(p.name for p in cache.iterdir()) == kept
    # a directory that cannot be made (root ignores modes, so a missing parent stands in for
    # a read-only image): compiled in the process, nothing raised
    assert run(tmp_path / "missing" / "jinja") == ["42", "48", "42"]
    assert not (tmp_path / "missing").exists()
