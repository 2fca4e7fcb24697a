"""The exercises of every lesson, one module per lesson: ``lNN_<name>.py``.

Importing this package imports each such module beside it, and each module registers its exercises with
:mod:`gatewaylab.grading` as it is imported. A new lesson's checks therefore register by existing.
"""

import importlib
import pkgutil
import re

_LESSON_MODULE = re.compile(r"l\d\d_\w+")

for _module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _LESSON_MODULE.fullmatch(_module.name):
        importlib.import_module(f"{__name__}.{_module.name}")
