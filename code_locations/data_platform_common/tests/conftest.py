import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


@pytest.fixture
def make_location(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], str]]:
    """Write a throwaway location package from {relative path: source}; returns its name."""
    names: list[str] = []

    def make(files: dict[str, str]) -> str:
        name = f"location_{uuid.uuid4().hex[:8]}"
        root = tmp_path / name
        for relative, source in {"__init__.py": "", **files}.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            for parent in path.relative_to(tmp_path).parents:
                init = tmp_path / parent / "__init__.py"
                if parent != Path(".") and not init.exists():
                    init.write_text("")
            path.write_text(textwrap.dedent(source))
        names.append(name)
        return name

    sys.path.insert(0, str(tmp_path))
    yield make
    sys.path.remove(str(tmp_path))
    for module in [m for m in sys.modules if any(m.split(".")[0] == n for n in names)]:
        del sys.modules[module]
