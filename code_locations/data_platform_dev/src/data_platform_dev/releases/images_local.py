"""`make images-local`: build the platform's images without a Docker engine or a registry, then
start them the way Kubernetes would and run one real ingestion run inside the ingestion image.

    python -m data_platform_dev.releases.images_local [--skip-run]

- Tools: Debian's buildah, podman, runc and debootstrap (installed with apt-get when missing;
  needs root). crun fails on mixed cgroup v1/v2 machines, so runc is the runtime; podman's
  default open-file limit can exceed the hard limit, so a containers.conf sets both limits.
- Storage: one image store under the cache folder ($DATA_PLATFORM_IMAGE_CACHE, default
  ~/.cache/data-platform-images): warm builds reuse its layers; nothing else on the machine grows.
- Base: the Dockerfile's pinned base when it can be pulled, else one assembled from Debian
  packages (debootstrap bookworm plus python3.11), passed as the BASE_IMAGE build argument.
- TLS: the CA bundle $SSL_CERT_FILE names is mounted for the build only (never copied into an
  image); the Dockerfile tells uv and pip to use the system bundle.
- Smoke test: each location image runs as uid 10001 with a read-only root filesystem and the
  environment its rendered release gives it; its code server must answer a gRPC health check.
  Then a run of the ingestion job executes in the ingestion image with the command, args and env
  that dagster-k8s's construct_dagster_k8s_job builds from the rendered instance config, against
  a local Postgres and the development upstream; it must end in RUN_SUCCESS.
- Host networking everywhere: no network namespace, bridge or iptables rule is created.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_platform_dev.releases import core as pr

TOOLS = {"buildah": "buildah", "podman": "podman", "runc": "runc", "debootstrap": "debootstrap"}
TAG = "local"
LOCAL_BASE = "localhost/data-platform/base:bookworm-py3.11"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates", "passwd")


def log(message: str) -> None:
    print(f"[images-local] {message}", flush=True)


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "data-platform-images"
    return Path(os.environ.get("DATA_PLATFORM_IMAGE_CACHE", default)).resolve()


# --------------------------------------------------------------------------------------------
# Tools and storage


def ensure_tools(tools: dict[str, str] = TOOLS) -> None:
    """apt-get install what is missing (CI runs as root on Debian): package -> binary."""
    missing = [package for package, binary in tools.items() if shutil.which(binary) is None]
    if not missing:
        return
    if os.geteuid() != 0:
        raise SystemExit(
            f"missing {', '.join(missing)}: run as root, or `sudo apt-get install {' '.join(missing)}`"
        )
    log(f"installing {' '.join(missing)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
        check=True,
        env=env,
    )


@dataclass(frozen=True)
class Store:
    """buildah and podman pointed at one private image store and configuration."""

    root: Path

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "CONTAINERS_CONF": str(self.root / "containers.conf"),
            "CONTAINERS_REGISTRIES_CONF": str(self.root / "registries.conf"),
            "TMPDIR": str(self.root / "tmp"),
            "BUILDAH_FORMAT": "docker",
        }

    def flags(self) -> list[str]:
        return [
            "--root",
            str(self.root / "storage"),
            "--runroot",
            str(self.root / "run"),
            "--storage-driver",
            "overlay",
        ]

    def prepare(self) -> Store:
        for sub in ("storage", "run", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "containers.conf").write_text(
            "[containers]\n"
            'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'
            'netns = "host"\n'
            "[engine]\n"
            'runtime = "runc"\n'
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
        )
        (self.root / "registries.conf").write_text(
            'unqualified-search-registries = ["docker.io"]\nshort-name-mode = "permissive"\n'
        )
        return self

    def buildah(
        self, *args: str, check: bool = True, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["buildah", *self.flags(), *args], check=check, text=True, env=self.env, **kwargs
        )

    def podman(
        self, *args: str, check: bool = True, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["podman", *self.flags(), "--runtime", "runc", *args],
            check=check,
            text=True,
            env=self.env,
            **kwargs,
        )

    def has_image(self, reference: str) -> bool:
        return self.podman("image", "exists", reference, check=False).returncode == 0

    def image_size(self, reference: str) -> int:
        out = self.podman(
            "image", "inspect", reference, "--format", "{{.Size}}", capture_output=True
        )
        return int(out.stdout.strip())

    def containers(self) -> list[str]:
        out = self.podman("ps", "-a", "--format", "{{.ID}}", capture_output=True)
        return out.stdout.split()


# --------------------------------------------------------------------------------------------
# Base image


def pinned_base() -> str:
    for line in pr.DOCKERFILE.read_text().splitlines():
        if line.startswith("ARG BASE_IMAGE="):
            return line.partition("=")[2].strip()
    raise LookupError(f"no `ARG BASE_IMAGE=` in {pr.DOCKERFILE}")


def assemble_base(store: Store) -> str:
    """A stand-in for python:3.11-slim-bookworm from Debian packages: debootstrap minbase,
    Python 3.11 with venv and pip, CA certificates; shims where the official image has them."""
    if store.has_image(LOCAL_BASE):
        log(f"base {LOCAL_BASE} already in the store")
        return LOCAL_BASE
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=store.root / "tmp") as scratch:
        rootfs = Path(scratch) / "rootfs"
        mirror = debian_mirror()
        log(f"assembling {LOCAL_BASE} with debootstrap (bookworm, {mirror})")
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                "bookworm",
                str(rootfs),
                mirror,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        local_bin = rootfs / "usr" / "local" / "bin"
        local_bin.mkdir(parents=True, exist_ok=True)
        for name in ("python3.11", "python3", "python"):
            (local_bin / name).unlink(missing_ok=True)
            (local_bin / name).symlink_to("/usr/bin/python3.11")
        (local_bin / "pip").write_text('#!/bin/sh\nexec /usr/bin/python3.11 -m pip "$@"\n')
        (local_bin / "pip").chmod(0o755)
        # the official image's Python is not Debian-managed: pip may install into it
        for marker in (rootfs / "usr" / "lib").glob("python3*/EXTERNALLY-MANAGED"):
            marker.unlink()
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            shutil.rmtree(rootfs / cache, ignore_errors=True)
            (rootfs / cache).mkdir(parents=True, exist_ok=True)
        tarball = Path(scratch) / "rootfs.tar"
        with tarfile.open(tarball, "w") as archive:
            archive.add(rootfs, arcname=".")
        store.podman(
            "import",
            "--change",
            "ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--change",
            'CMD ["python3"]',
            str(tarball),
            LOCAL_BASE,
            stdout=subprocess.DEVNULL,
        )
    log(f"base assembled in {time.monotonic() - started:.0f} s")
    return LOCAL_BASE


def base_image(store: Store) -> str:
    """The pinned base when it can be pulled here, else the assembled one."""
    pinned = pinned_base()
    if store.has_image(pinned):
        return pinned
    try:
        store.buildah("pull", "--quiet", pinned, capture_output=True, timeout=120)
        log(f"pulled the pinned base {pinned}")
        return pinned
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        log("the pinned base cannot be pulled here: assembling one from Debian packages")
    return assemble_base(store)


# --------------------------------------------------------------------------------------------
# Build


def local_reference(image: str) -> str:
    return f"localhost/{image}:{TAG}"


def ca_bundle() -> Path | None:
    """The CA bundle this machine trusts (a TLS-inspecting proxy's CA included)."""
    for candidate in (
        os.environ.get("SSL_CERT_FILE"),
        os.environ.get("REQUESTS_CA_BUNDLE"),
        "/etc/ssl/certs/ca-certificates.crt",
    ):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def debian_mirror() -> str:
    """The Debian mirror apt already uses here (deb.debian.org when none is found)."""
    for sources in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    legacy = Path("/etc/apt/sources.list")
    if legacy.is_file():
        for line in legacy.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and "security" not in parts[1]:
                return parts[1]
    return DEBIAN_MIRROR


def build(store: Store, image: pr.ImageBuild, base: str) -> float:
    started = time.monotonic()
    command = [
        "bud",
        "--format",
        "docker",
        "--layers",
        "--network",
        "host",
        "--isolation",
        "chroot",
        "--file",
        str(pr.DOCKERFILE),
        "--target",
        image.target,
        "--build-arg",
        f"BASE_IMAGE={base}",
        "--tag",
        local_reference(image.image),
    ]
    for key, value in image.build_args.items():
        command += ["--build-arg", f"{key}={value}"]
    bundle = ca_bundle()
    if bundle is not None:  # mounted for the RUN steps only; never part of a layer
        command += ["--volume", f"{bundle}:/etc/ssl/certs/ca-certificates.crt:ro"]
    log(f"building {local_reference(image.image)} (target {image.target})")
    store.buildah(*command, str(pr.REPO_ROOT))
    return time.monotonic() - started


def build_all(store: Store, builds: Sequence[pr.ImageBuild]) -> dict[str, float]:
    base = base_image(store)
    return {b.image: build(store, b, base) for b in builds}


def prune(store: Store) -> None:
    """Drop untagged layers older than a week: younger ones are the layer cache that makes the
    next build warm (buildah keeps its intermediate layers as untagged images)."""
    store.podman(
        "image",
        "prune",
        "--force",
        "--filter",
        "until=168h",
        stdout=subprocess.DEVNULL,
        check=False,
    )


def network_state() -> tuple[str, ...]:
    """Interfaces and firewall rules: a run must leave both as it found them."""
    state = [subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout]
    if shutil.which("iptables-save"):
        rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
        state.append("\n".join(line for line in rules.splitlines() if not line.startswith("#")))
    return tuple(re.sub(r"\[\d+:\d+\]", "", text) for text in state)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--skip-run", action="store_true", help="build only, start nothing")
    args = parser.parse_args(argv)
    ensure_tools()
    network_before = network_state()
    store = Store(cache_dir()).prepare()
    log(f"image store: {store.root}")
    builds = [b for b in pr.image_builds("dev") if b.image != pr.DEV_UPSTREAM_IMAGE]
    times = build_all(store, builds)
    for image, seconds in times.items():
        size = store.image_size(local_reference(image))
        log(f"{local_reference(image)}: {size / 1e6:.0f} MB, built in {seconds:.0f} s")
    if not args.skip_run:
        from data_platform_dev.releases import image_smoke

        image_smoke.run_all(store, builds)
    prune(store)
    if store.containers():
        raise SystemExit(f"containers left in {store.root}: {store.containers()}")
    if network_state() != network_before:
        raise SystemExit("the network interfaces or firewall rules changed during the run")
    log(f"images built in {sum(times.values()):.0f} s; no container or network rule left behind")
    return 0


if __name__ == "__main__":
    sys.exit(main())
