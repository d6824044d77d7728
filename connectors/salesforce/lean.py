"""Import simple-salesforce without its Metadata API module until that is used.

``simple_salesforce`` imports ``simple_salesforce.metadata`` when it is imported, and that module
imports zeep (a SOAP client) and with it lxml: about 60 modules and 5.6 MB resident in every worker
(measured: the worker's imports with every vendor on hold 88.4 MB, 82.8 MB without them). Switchboard
calls the REST API only. :func:`defer_metadata_api` registers a stand-in for that one module before
simple-salesforce is imported: its ``SfdcMetadataApi`` loads the real module on first use (the
``Salesforce.mdapi`` property, deploys), and any other name asked of it does the same, so the
package behaves as before, only later. Call it before the first ``import simple_salesforce``.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import threading
import types
from typing import Any

MODULE = "simple_salesforce.metadata"
_loading = threading.Lock()  # the clients call from worker threads


def _spec() -> importlib.machinery.ModuleSpec | None:
    """Where the real module is, found without importing the package."""
    package = importlib.util.find_spec("simple_salesforce")
    if package is None or not package.submodule_search_locations:
        return None
    return importlib.machinery.PathFinder.find_spec(MODULE, list(package.submodule_search_locations))


def _real() -> types.ModuleType:
    """The real module, loaded once and put in the stand-in's place."""
    with _loading:
        module = sys.modules.get(MODULE)
        if module is not None and not isinstance(module, _StandIn):
            return module
        return _load()


def _load() -> types.ModuleType:
    spec = _spec()
    if spec is None or spec.loader is None:
        raise ImportError(f"{MODULE} is not installed with simple-salesforce")
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(MODULE, None)
        raise
    return module


class _LazyMetadataApi:
    """Stands for ``SfdcMetadataApi`` in ``simple_salesforce.api``: constructing it constructs the real one."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        return _real().SfdcMetadataApi(*args, **kwargs)


class _StandIn(types.ModuleType):
    SfdcMetadataApi = _LazyMetadataApi

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # the import system asking what kind of module this is
            raise AttributeError(name)
        return getattr(_real(), name)


def defer_metadata_api() -> None:
    """Register the stand-in (once; nothing to do when the real module is already imported)."""
    if MODULE not in sys.modules and _spec() is not None:
        stand_in = _StandIn(MODULE, "stands for simple_salesforce.metadata until it is used (connectors/salesforce/lean.py)")
        stand_in.__package__ = "simple_salesforce"
        sys.modules[MODULE] = stand_in
