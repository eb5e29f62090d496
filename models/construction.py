"""One model is built at a time in this process.

transformers' ``from_pretrained`` builds its model under process-wide patches: while it runs,
``nn.Module.register_parameter`` puts every new parameter on the meta device and the
``torch.nn.init`` functions do nothing. A module that another thread builds meanwhile gets meta or
uninitialised weights, and two loads that overlap restore each other's patch, which leaves it
installed for the rest of the process. The service builds models in more than one thread (the
retrain worker beside request threads and promotions), so everything in ``models/`` that
creates modules (the ``from_pretrained``/``from_config``/``load`` factories, the ``__init__`` of
modules with their own layers, int8 quantisation) holds this lock while it does. Loaders that
only combine those take no lock of their own, so file reads stay outside it. It is re-entrant: a
factory may call another.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

MODEL_CONSTRUCTION_LOCK = threading.RLock()


def builds_models(factory: Callable[P, R]) -> Callable[P, R]:
    """Run ``factory`` while holding :data:`MODEL_CONSTRUCTION_LOCK`."""

    @functools.wraps(factory)
    def locked(*args: P.args, **kwargs: P.kwargs) -> R:
        with MODEL_CONSTRUCTION_LOCK:
            return factory(*args, **kwargs)

    return locked
