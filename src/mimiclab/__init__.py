"""mimiclab: from "use MIMIC" to answers, on your own machine."""

__version__ = "0.1.0"

__all__ = ["__version__"]
