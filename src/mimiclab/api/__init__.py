"""The Python API: ``mimiclab.open(...)`` -> Dataset, ``MIMICDataset`` (the datathon's example class),
``Patient`` timelines and plots. Imports catalog, build, store and errors only (plus one lazy hook to
cohorts, see Dataset.cohort)."""

from mimiclab.api._common import MissingFileError, UnknownNameError
from mimiclab.api.dataset import Dataset, Relation, open
from mimiclab.api.patient import Patient
from mimiclab.api.seed import MIMICDataset, PatientSample

__all__ = ["Dataset", "MIMICDataset", "MissingFileError", "Patient", "PatientSample", "Relation",
           "UnknownNameError", "open"]
