"""The tests here import their helpers (platform_releases, k8s_cache) as plain modules; with
pytest's importlib import mode this folder has to be put on sys.path explicitly."""

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.append(_HERE)
