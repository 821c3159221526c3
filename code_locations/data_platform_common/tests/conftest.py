import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


@pytest.fixture
def make_location(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], Path]]:
    """Write a throwaway dg project from {path below defs/: source}; returns the path of its
    definitions.py, as a location's ``__file__`` would be."""
    names: list[str] = []

    def make(files: dict[str, str]) -> Path:
        name = f"location_{uuid.uuid4().hex[:8]}"
        project = tmp_path / name
        (project / "pyproject.toml").parent.mkdir(parents=True)
        (project / "pyproject.toml").write_text(
            f'[project]\nname = "{name}"\nversion = "0"\n\n'
            f'[tool.dg]\ndirectory_type = "project"\n\n[tool.dg.project]\nroot_module = "{name}"\n'
        )
        package = project / name
        for relative, source in {"defs/__init__.py": "", **files}.items():
            path = package / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            for folder in [package, *path.relative_to(package).parents]:
                init = package / folder / "__init__.py"
                if not init.exists():
                    init.write_text("")
            path.write_text(textwrap.dedent(source))
        sys.path.insert(0, str(project))
        names.append(name)
        return package / "definitions.py"

    yield make
    for module in [m for m in sys.modules if m.split(".")[0] in names]:
        del sys.modules[module]
    sys.path[:] = [p for p in sys.path if Path(p).name not in names]
