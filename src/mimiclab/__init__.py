"""mimiclab: from "use MIMIC" to answers, on your own machine.

The Python API is exported lazily (PEP 562), so ``import mimiclab`` and the CLI stay fast and do not
import pandas until an API name is used::

    import mimiclab
    ds = mimiclab.open("mimic-iv-demo")
"""

__version__ = "0.1.0"

_API = {"open", "Dataset", "MIMICDataset", "PatientSample", "Patient", "Relation"}

# `open` is reachable as mimiclab.open but left out of __all__: a star import must not shadow builtins.open
__all__ = ["Dataset", "MIMICDataset", "Patient", "PatientSample", "__version__"]


def __getattr__(name: str):
    if name == "build":  # mimiclab.build(slug, source=...): the loader, without importing it up front
        from mimiclab.load import build

        globals()["build"] = build
        return build
    if name in _API:
        from mimiclab import api

        value = getattr(api, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mimiclab' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _API | {"build"})
