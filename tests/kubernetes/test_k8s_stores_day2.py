"""Stores on day 2: a node drain is never blocked by a budget, a rotated Secret becomes the role's
password on the next `helm upgrade` (the rendered roles script run against a real Postgres),
and the documented way to grow a volume names the objects the chart renders."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import k8s_cache
import psycopg
import pytest
from chart_scripts import run_chart_script
from data_platform_dev.releases import core as pr


def stores(env: str) -> tuple[pr.Manifest, ...]:
    return k8s_cache.rendered(env, pr.STORES_RELEASE)


def pod_labels(obj: pr.Manifest) -> dict[str, str]:
    template = pr.pod_template(obj)
    assert template is not None
    return dict(template[0].get("labels") or {})


def allowed_disruptions(budget: pr.Manifest, replicas: int) -> int:
    spec = budget["spec"]
    if "maxUnavailable" in spec:
        return int(spec["maxUnavailable"])
    return replicas - int(spec["minAvailable"])


@pytest.mark.parametrize("env", pr.ENVIRONMENTS)
def test_no_disruption_budget_blocks_a_node_drain(env: str) -> None:
    """A drain evicts each pod of a workload in turn; a budget that allows 0 disruptions makes
    it wait forever (cluster upgrades and autoscaler scale-downs stall with it)."""
    objects = k8s_cache.all_rendered(env)
    workloads = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]
    budgets = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    for budget in budgets:
        selected = [
            w for w in workloads if pr.selector_matches(budget["spec"]["selector"], pod_labels(w))
        ]
        assert selected, f"{pr.describe(budget)} selects no workload"
        for workload in selected:
            replicas = int(workload["spec"].get("replicas", 1))
            assert allowed_disruptions(budget, replicas) >= 1, (
                f"{pr.describe(budget)} blocks draining {pr.describe(workload)}"
            )
    names = {b["metadata"]["name"] for b in budgets}
    for store in ("postgres", "redis"):
        assert store not in names, f"{store}: one replica, no budget (reason in values.yaml)"
    # the multi-replica server keeps one serving through a drain (production: 2 replicas)
    if env == "production":
        assert "feast-feature-server" in names


def test_a_blocking_budget_is_refused_by_the_schema() -> None:
    release = k8s_cache.release("production", pr.STORES_RELEASE)
    with pytest.raises(Exception, match=r"maxUnavailable|minimum"):
        pr.render(release, {"postgres": {"podDisruptionBudget": {"enabled": True}}})
    with pytest.raises(Exception, match=r"maxUnavailable|minimum"):
        pr.render(
            release, {"postgres": {"podDisruptionBudget": {"enabled": True, "maxUnavailable": 0}}}
        )


def roles_hook(env: str) -> pr.Manifest:
    (job,) = [o for o in stores(env) if o["kind"] == "Job"]
    return job


# The test server's superuser is the stack's `platform`: render the chart for another role.
TEST_ROLE = "day2_rotation"


def initdb_scripts(env: str, role: str = TEST_ROLE) -> dict[str, str]:
    release = k8s_cache.release(env, pr.STORES_RELEASE)
    (configmap,) = [
        o
        for o in pr.render(release, {"postgres": {"user": role}})
        if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "postgres-initdb"
    ]
    return dict(configmap["data"])


@pytest.mark.parametrize("env", pr.ENVIRONMENTS)
def test_roles_hook_runs_after_every_install_and_upgrade_and_reaches_postgres(env: str) -> None:
    job = roles_hook(env)
    hooks = set(job["metadata"]["annotations"]["helm.sh/hook"].split(","))
    assert hooks == {"post-install", "post-upgrade"}
    spec = job["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert "/scripts/10-roles.sh" in container["command"][-1]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["scripts"]["configMap"]["name"] == "postgres-initdb"
    objects = k8s_cache.all_rendered(env)
    (postgres,) = [o for o in objects if pr.describe(o) == "StatefulSet/postgres"]
    peers = pr.ingress_peers(objects, pod_labels(postgres))
    assert pr.admitted(peers, pod_labels(job)), "the roles Job cannot reach Postgres"
    env_vars = {e["name"]: e.get("value") for e in container["env"]}
    assert env_vars["PGHOST"].startswith("postgres.")


def run_roles_script(script: str, tmp_path: Path, url: str, new_password: str) -> str:
    """10-roles.sh exactly as rendered, with the Secrets as files, against `url`'s server."""
    secrets = tmp_path / "secrets"
    (secrets / "admin").mkdir(parents=True)
    (secrets / "platform").mkdir(parents=True)
    (secrets / "admin" / "postgres-password").write_text(urlparse(url).password or "")
    (secrets / "platform" / "POSTGRES_PASSWORD").write_text(new_password)
    # no PGPASSWORD: the script reads the superuser's password from its Secret, as in the Job
    completed = run_chart_script(
        script, tmp_path, url, PGPASSWORD="", PLATFORM_SECRETS_DIR=str(secrets)
    )
    assert new_password not in completed.stdout + completed.stderr
    return completed.stdout


def connects(url: str, user: str, password: str) -> bool:
    parts = urlparse(url)
    try:
        with psycopg.connect(
            host=parts.hostname,
            port=parts.port,
            user=user,
            password=password,
            dbname="postgres",
            connect_timeout=5,
        ):
            return True
    except psycopg.OperationalError:
        return False


def test_a_rotated_secret_becomes_the_roles_password(postgres_url: str, tmp_path: Path) -> None:
    script = initdb_scripts("production")["10-roles.sh"]
    role = TEST_ROLE
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        admin.execute(f"CREATE ROLE \"{role}\" LOGIN PASSWORD 'the-initdb-password'")
    try:
        assert connects(postgres_url, role, "the-initdb-password")
        run_roles_script(script, tmp_path / "first", postgres_url, "rotated-in-the-secret")
        assert connects(postgres_url, role, "rotated-in-the-secret")
        assert not connects(postgres_url, role, "the-initdb-password")
        # idempotent: a second upgrade with the same Secret changes nothing
        run_roles_script(script, tmp_path / "second", postgres_url, "rotated-in-the-secret")
        assert connects(postgres_url, role, "rotated-in-the-secret")
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_the_roles_script_creates_a_missing_role(postgres_url: str, tmp_path: Path) -> None:
    """A data directory restored from elsewhere may lack the role: the hook creates it."""
    script = initdb_scripts("dev")["10-roles.sh"]
    role = TEST_ROLE
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f'DROP ROLE IF EXISTS "{role}"')
    try:
        run_roles_script(script, tmp_path, postgres_url, "a-fresh-password")
        assert connects(postgres_url, role, "a-fresh-password")
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_growing_a_volume_is_documented_with_the_rendered_names() -> None:
    """StatefulSet volumeClaimTemplates cannot change: the README says how to grow the PVC."""
    readme = (pr.REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("### Growing a volume") :]
    section = section[: section.index("\n## ", 1)] if "\n## " in section[1:] else section
    for obj in stores("production"):
        if obj["kind"] != "StatefulSet":
            continue
        name = obj["metadata"]["name"]
        (claim,) = obj["spec"]["volumeClaimTemplates"]
        pvc = f"{claim['metadata']['name']}-{name}-0"
        assert pvc in section, f"README does not show how to grow {pvc}"
        assert f"`{name}`" in section or f"statefulset {name} --cascade=orphan" in section
    assert "statefulset postgres --cascade=orphan" in section
    assert "allowVolumeExpansion" in section
