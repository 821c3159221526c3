"""dbt's Jinja templates compiled once per manifest, not once per build.

Every process that runs a build compiles, from Jinja source to Python code, each macro it
calls and each node's SQL: about 200 templates and 0.3 s of an incremental build over
1,000,000 entries, holding the GIL while dbt's threads wait. The sources only change with the
manifest, so the compiled code is kept in Jinja's own bytecode cache
(jinja2.FileSystemBytecodeCache) in dbt/target/jinja/: compiled when the manifest is prepared
(`make dbt-manifest`, the image build), completed by builds where the directory is writable,
read by every build. dbt makes its templates with ``Environment.from_string``, which Jinja
never caches (it caches templates from loaders only), so prepare() wraps the ``compile`` of
dbt's environment to ask the cache first; a template's key is its source and the versions of
Jinja and dbt-common, so a changed macro or an upgrade misses and compiles as before. The
code loaded comes from the project's own directory, as trusted as the project's Python.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import tempfile
from hashlib import sha1
from importlib.metadata import version
from pathlib import Path
from types import CodeType
from typing import Any

CACHE_DIR = "jinja"
_installed: dict[str, Any] = {}


def template_cache_dir(manifest_path: Path) -> Path:
    return manifest_path.parent / CACHE_DIR


@functools.cache
def _compilers() -> str:
    return f"jinja2 {version('jinja2')} dbt-common {version('dbt-common')}"  # 0.6 ms: once


def _key(environment: Any, source: str) -> str:
    """The code depends on the compiler (Jinja's, and dbt's extensions to it) and on the
    environment's class (dbt's native one generates other code)."""
    kind = f"{type(environment).__module__}.{type(environment).__qualname__}"
    digest = sha1(source.encode(), usedforsecurity=False).hexdigest()
    return f"{_compilers()} {kind}:{digest}"


def use_compiled_templates(directory: Path) -> None:
    """dbt's Jinja environments take compiled code from ``directory`` and store there what
    they compile (when it is writable: an image's is not, and is filled at build)."""
    import jinja2
    from dbt_common.clients import jinja as dbt_jinja

    if _installed.get("directory") == directory:
        return
    with contextlib.suppress(OSError):  # read-only: the image build filled it
        directory.mkdir(exist_ok=True)
    cache = jinja2.FileSystemBytecodeCache(str(directory))
    compile_source = _installed.setdefault("compile", dbt_jinja.MacroFuzzEnvironment.compile)
    _installed["directory"] = directory

    def compile(
        self: jinja2.Environment,
        source: Any,
        name: str | None = None,
        filename: str | None = None,
        raw: bool = False,
        defer_init: bool = False,
    ) -> CodeType | str:
        if raw or defer_init or name or filename or not isinstance(source, str):
            return compile_source(self, source, name, filename, raw, defer_init)  # type: ignore[no-any-return]
        if dbt_jinja.MACRO_DEBUGGING:  # dbt's _compile puts the source where tracebacks see it
            return compile_source(self, source)  # type: ignore[no-any-return]
        bucket = cache.get_bucket(self, _key(self, source), None, source)
        if bucket.code is None:
            bucket.code = compile_source(self, source)
            with contextlib.suppress(OSError):  # read-only: compiled for this process only
                cache.set_bucket(bucket)
        return bucket.code

    dbt_jinja.MacroFuzzEnvironment.compile = compile  # type: ignore[method-assign,assignment]


def _sources(manifest: dict[str, Any]) -> list[str]:
    """What a build compiles from the manifest: every macro, node and hook (the rest, such as
    the profile's fields and the tests' arguments, are one-liners builds add themselves)."""
    sources = [macro["macro_sql"] for macro in manifest["macros"].values()]
    for node in manifest["nodes"].values():
        sources.append(node.get("raw_code") or "")
        config = node.get("config") or {}
        for hook in [*config.get("pre-hook", []), *config.get("post-hook", [])]:
            sources.append(hook["sql"])
    return [source for source in sources if source]


def compile_templates(manifest_path: Path) -> tuple[Path, int]:
    """Compile the manifest's templates into a fresh cache beside it; the directory and the
    number of templates. Swapped in whole: the entries of an older manifest go with it."""
    from dbt_common.clients.jinja import get_environment

    directory = template_cache_dir(manifest_path)
    sources = _sources(json.loads(manifest_path.read_text()))
    scratch = Path(tempfile.mkdtemp(dir=manifest_path.parent, prefix=".jinja-"))
    use_compiled_templates(scratch)
    environment = get_environment()
    for source in sources:
        environment.compile(source)
    for path in scratch.iterdir():  # Jinja writes 0600: an image's builds run as another user
        path.chmod(0o644)
    scratch.chmod(0o755)
    old = directory.with_name(f".{CACHE_DIR}-old-{os.getpid()}")
    if directory.exists():
        directory.rename(old)
    scratch.rename(directory)
    shutil.rmtree(old, ignore_errors=True)
    use_compiled_templates(directory)
    return directory, len(sources)


def missing_templates(manifest_path: Path) -> int:
    """How many of the manifest's templates the cache beside it cannot serve (to this user)."""
    import jinja2
    from dbt_common.clients.jinja import get_environment

    cache = jinja2.FileSystemBytecodeCache(str(template_cache_dir(manifest_path)))
    environment = get_environment()
    sources = _sources(json.loads(manifest_path.read_text()))
    return sum(
        cache.get_bucket(environment, _key(environment, source), None, source).code is None
        for source in sources
    )


if __name__ == "__main__":
    from transformation.dbt_resource import dbt_files
    from transformation.manifest import ensure_manifest

    cache_dir, count = compile_templates(ensure_manifest(dbt_files))
    print(f"compiled {count} dbt templates into {cache_dir}")
