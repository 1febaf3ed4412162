"""Small shared pieces of the API layer: lookup errors with suggestions, SQL quoting."""

from __future__ import annotations

import difflib

from mimiclab.errors import MimiclabError
from mimiclab.sqltext import ident, lit, qname  # noqa: F401 - the API layer's quoting, re-exported


def is_select(table: str) -> bool:
    """A mapping's table written as a (SELECT ...) rather than a name."""
    return table.lstrip().startswith("(")


def table_sql(table: str) -> str:
    """A mapping's table in FROM: a qualified name quoted, or a (SELECT ...) the catalog wrote as it is."""
    return table if is_select(table) else qname(table)


def mapped_from(spec, joined: bool = True) -> str:
    """The FROM of a mapped table, span or timeline source (catalog/concepts): its rows as `t`, its dictionary
    as `d` (LEFT JOIN, unless `joined` is false)."""
    join = f" LEFT JOIN {qname(spec.join.table)} d ON {spec.join.condition()}" if spec.join and joined else ""
    return f"{table_sql(spec.table)} t{join}"


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


def number_text(expr: str) -> str:
    """A finite DOUBLE as text, the same on every backend and as the file writes it: whole numbers below 1e15
    without ".0" (DuckDB wrote 566.0 where PostgreSQL and the csv write 566), others in the database's
    shortest form. NaN, infinities and numbers from 1e15 are still each database's own spelling (MIMIC has none)."""
    return (f"CASE WHEN {expr} = FLOOR({expr}) AND ABS({expr}) < 1e15 THEN CAST(CAST({expr} AS BIGINT) AS VARCHAR) "
            f"ELSE CAST({expr} AS VARCHAR) END")


def read_csv_na() -> frozenset[str]:
    """The text pandas.read_csv reads as NaN by default ("", "N/A", "NA", "None", "null", ...): MIMICDataset
    gives what read_csv gives (the demo's labevents valueuom has 2,161 "N/A", procedureevents 771 "None")."""
    try:
        from pandas._libs.parsers import STR_NA_VALUES  # type: ignore[import-not-found]  # pandas' own list, so it follows pandas' changes
    except ImportError:  # pragma: no cover - the list as documented in pandas 1.x-3.x
        STR_NA_VALUES = {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                         "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}
    return frozenset(STR_NA_VALUES)


def frame(table, int_dtypes: dict[str, str] | None = None, text_as_null: frozenset[str] | None = None):
    """Arrow -> pandas, the one dtype policy of every frame the API returns (docs/api.md):

    * integers of every width -> nullable ``Int64``: ids with gaps stay exact (float64 would round OMOP's
      64-bit ids), one dtype whatever the rows, and no int16 that wraps around (``anchor_year * 365``);
    * DATE -> ``datetime64[us]`` like TIMESTAMP, so dates and times compare and subtract alike;
    * DECIMAL/HUGEINT (DuckDB's ``sum()`` of integers, numeric literals) -> ``Int64`` when whole and within
      64 bits, else ``float64``: numbers, never ``decimal.Decimal`` objects;
    * text, floats, timestamps: pandas' own conversion.

    ``int_dtypes`` overrides integer columns by name (MIMICDataset: read_csv's int64, or float64 when the
    file has empty cells); ``text_as_null``: text values read as missing (MIMICDataset: read_csv's, above).
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    overrides = int_dtypes or {}
    arrays, names = [], []
    for name, col in zip(table.column_names, table.columns, strict=True):
        t = col.type
        if name in overrides and (pa.types.is_integer(t) or pa.types.is_decimal(t)):
            col = col.cast(pa.int64() if overrides[name] == "int64" else pa.float64())
        elif pa.types.is_date(t):
            col = col.cast(pa.timestamp("us"))
        elif pa.types.is_decimal(t):
            col = _decimal_to_number(col)
        elif text_as_null and (pa.types.is_string(t) or pa.types.is_large_string(t)):
            col = pc.if_else(pc.is_in(col, value_set=pa.array(sorted(text_as_null), t)), pa.scalar(None, t), col)
        arrays.append(col)
        names.append(name)
    ints = {pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16(), pa.uint32()}
    table = pa.table(arrays, names=names)
    if all(name in overrides for name, col in zip(names, arrays, strict=True)
           if pa.types.is_integer(col.type)):
        return table.to_pandas()  # every integer column has its dtype already (MIMICDataset): the fast path
    df = table.to_pandas(
        types_mapper=lambda t: pd.Int64Dtype() if t in ints else pd.UInt64Dtype() if t == pa.uint64() else None)
    for name, how in overrides.items():
        if how == "int64" and name in df.columns and isinstance(df[name].dtype, pd.Int64Dtype):
            df[name] = df[name].to_numpy(dtype="int64")
    return df


def _decimal_to_number(col):
    """A whole-number decimal that fits in int64 becomes int64; anything else float64."""
    import pyarrow as pa

    if col.type.scale == 0:
        try:
            return col.cast(pa.int64())  # safe cast: raises rather than wraps when a value does not fit
        except (pa.ArrowInvalid, OverflowError):
            pass
    return col.cast(pa.float64(), safe=False)
