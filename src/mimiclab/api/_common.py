"""Small shared pieces of the API layer: lookup errors with suggestions, SQL quoting."""

from __future__ import annotations

import difflib
import os

from mimiclab.errors import MimiclabError


class UnknownNameError(MimiclabError, KeyError):
    """An unknown table, column, file key, item or id. A KeyError too, so code written against dicts of
    DataFrames (the datathon's example class) catches it; the message lists close matches."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class MissingFileError(MimiclabError, FileNotFoundError):
    """A file the caller named is not in the folder (pandas.read_csv raised FileNotFoundError here)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def suggest(name: str, options, n: int = 3) -> str:
    opts = [str(o) for o in options]
    close = difflib.get_close_matches(str(name), opts, n=n, cutoff=0.5)
    if not close:
        low = {o.lower(): o for o in opts}
        close = [low[c] for c in difflib.get_close_matches(str(name).lower(), list(low), n=n, cutoff=0.5)]
    if close:
        return f" Did you mean: {', '.join(close)}?"
    return f" Known: {', '.join(sorted(opts))}." if 0 < len(opts) <= 25 else ""


def lit(s: str | os.PathLike) -> str:
    return "'" + str(s).replace("'", "''") + "'"


def ident(s: str) -> str:
    return '"' + s.replace('"', '""') + '"'


def qname(qualified: str) -> str:
    """schema.table -> "schema"."table"."""
    schema, _, name = qualified.rpartition(".")
    return f"{ident(schema)}.{ident(name)}" if schema else ident(name)


def as_int(value, what: str = "id") -> int:
    """Ids are integers; numpy integers and integral floats/strings are accepted, anything else refused."""
    if not isinstance(value, bool):
        if hasattr(value, "__index__"):  # int, numpy integers: exact (OMOP ids exceed float precision)
            return value.__index__()
        if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            return int(value.strip())
        if isinstance(value, float) and value.is_integer():
            return int(value)
    raise UnknownNameError(f"{what} must be an integer, got {value!r}")


def frame(table):
    """Arrow -> pandas with integer columns as nullable Int64: ids with gaps stay exact (float64 would
    round OMOP's 64-bit ids) and keep one dtype whatever the patient."""
    import pandas as pd
    import pyarrow as pa

    ints = {pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16(), pa.uint32()}
    return table.to_pandas(types_mapper=lambda t: pd.Int64Dtype() if t in ints else None)
