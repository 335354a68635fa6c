"""Run ultralytics offline in this process: no downloads, installs, update checks or analytics.

Ultralytics fetches a font (``Arial.ttf``) for its label plots, AMP-check weights, missing
packages (``check_requirements``), the latest version from PyPI, GitHub release lists, and
sends usage events. :func:`apply` switches all of that off *in memory*: it sets the
environment variables ultralytics reads (``YOLO_OFFLINE``, ``YOLO_AUTOINSTALL``) for this
process and its children, flips its module-level flags and settings without saving them,
and replaces the few functions that reach the network with local answers. The user's
settings file (``~/.config/Ultralytics/settings.json``) is never written.

``import yolo_long`` sets the environment variables (so an ultralytics imported afterwards
never even probes DNS) and applies the patches when ultralytics is loaded; every part of
yolo_long that imports ultralytics (and unpickling one of our checkpoints, which imports
:mod:`yolo_long.modules`) calls :func:`apply` again, which is idempotent.

The same holds, with nothing more to do, in the worker processes of multi-GPU training
(``device=0,1``; ultralytics' ``generate_ddp_file``): they inherit the environment variables
from the ``yolo`` process, which imported yolo_long to unpickle our checkpoint, and the pickled
model they load names our layers by module, so loading it imports :mod:`yolo_long.modules`.

>>> import os
>>> import ultralytics.utils
>>> from yolo_long.offline import apply
>>> apply()
>>> os.environ["YOLO_OFFLINE"], ultralytics.utils.ONLINE, ultralytics.utils.SETTINGS["sync"]
('1', False, False)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import ModuleType

__all__ = ["OFFLINE_ENV", "apply", "local_font"]

# Read by ultralytics at import time: no DNS probe, no pip/uv auto-install.
OFFLINE_ENV = {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false"}

# Settings that would make a trainer talk to a server (cloud loggers, analytics, Platform).
_OFFLINE_SETTINGS = {
    "sync": False,
    "api_key": "",
    "clearml": False,
    "comet": False,
    "dvc": False,
    "mlflow": False,
    "raytune": False,
    "wandb": False,
    "vscode_msg": False,
    "openvino_msg": False,
}

_applied = False


def set_environment() -> None:
    """Set the offline environment variables for this process (and the processes it starts)."""
    os.environ.update(OFFLINE_ENV)


def local_font(font: str = "Arial.ttf") -> Path:
    """Stand-in for ``ultralytics.utils.checks.check_font``: matplotlib's bundled DejaVu Sans."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"


def _refuse_download(url: object = "", *args: object, **kwargs: object) -> None:
    # ConnectionError is what ultralytics raises itself when offline, and what its callers catch.
    raise ConnectionError(f"yolo_long runs ultralytics offline: refusing to download {url}")


def _no_github_assets(*args: object, **kwargs: object) -> tuple[str, list[str]]:
    return "", []


def _is_url_offline(url: object, check: bool = False) -> bool:
    return False if check else _ORIGINAL_IS_URL(url)  # a URL is never "reachable" offline


def _no_update(*args: object, **kwargs: object) -> bool:
    return False


def _no_version(*args: object, **kwargs: object) -> None:
    return None


_ORIGINAL_IS_URL = None


def _ultralytics_modules() -> list[ModuleType]:
    return [m for name, m in list(sys.modules.items()) if name.startswith("ultralytics") and m is not None]


def _replace(owner: ModuleType, name: str, new: object) -> None:
    """Rebind ``owner.name`` and every copy that ``from owner import name`` made in loaded modules."""
    old = getattr(owner, name)
    for module in _ultralytics_modules():
        if module.__dict__.get(name) is old:
            setattr(module, name, new)


def apply() -> None:
    """Switch every download, auto-install, update check and analytics call of ultralytics off."""
    global _applied, _ORIGINAL_IS_URL
    set_environment()
    if _applied:
        return
    import ultralytics.utils as utils
    from ultralytics.utils import checks, downloads, events
    from ultralytics.utils.callbacks import platform

    _replace(utils, "ONLINE", False)
    _replace(utils, "AUTOINSTALL", False)
    dict.update(utils.SETTINGS, _OFFLINE_SETTINGS)  # dict.update: in memory, never saved to the file

    _ORIGINAL_IS_URL = downloads.is_url
    _replace(downloads, "is_url", _is_url_offline)
    _replace(downloads, "safe_download", _refuse_download)
    _replace(downloads, "get_github_assets", _no_github_assets)
    _replace(utils, "is_online", _no_update)
    _replace(downloads, "is_online", _no_update)
    _replace(checks, "check_font", local_font)
    _replace(checks, "check_pip_update_available", _no_update)
    _replace(checks, "check_latest_pypi_version", _no_version)

    # Analytics and Platform callbacks are looked up from these dicts each time a trainer,
    # validator or predictor is made: emptied, nothing is registered.
    events.events.enabled = False
    events.callbacks.clear()
    platform.callbacks.clear()
    _applied = True
