"""The tests here import their session cache (k8s_cache) as a plain module; with pytest's
importlib import mode this folder has to be put on sys.path explicitly. The release library
itself is data_platform_dev.releases."""

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.append(_HERE)
