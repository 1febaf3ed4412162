"""Result values as they leave mimiclab (the workbench's JSON and CSV, `mimiclab sql`'s csv and json): one
conversion, so a value reads the same whichever way it was exported."""

from __future__ import annotations

import datetime as dt
import decimal
import math
from typing import Any

JS_SAFE_INT = 2**53 - 1  # browsers parse JSON numbers as doubles: beyond this, digits are lost


def interval_text(months: int, days: int, nanoseconds: int) -> str:
    """An interval as DuckDB and PostgreSQL print one ("1 year 2 months 5 days 07:00:00"); Arrow's
    month-day-nano triple was exported as "[0, 5, 25200000000000]"."""
    parts = []
    years, months = divmod(months, 12) if months >= 0 else (-((-months) // 12), -((-months) % 12))
    for n, unit in ((years, "year"), (months, "month"), (days, "day")):
        if n:
            parts.append(f"{n} {unit}{'' if abs(n) == 1 else 's'}")
    if nanoseconds or not parts:
        sign, ns = ("-" if nanoseconds < 0 else ""), abs(nanoseconds)
        us = ns // 1000
        h, rest = divmod(us, 3_600_000_000)
        m, rest = divmod(rest, 60_000_000)
        s, frac = divmod(rest, 1_000_000)
        parts.append(f"{sign}{h:02d}:{m:02d}:{s:02d}" + (f".{frac:06d}".rstrip("0") if frac else ""))
    return " ".join(parts)


def jsonable(v: Any, *, safe_ints: bool = True) -> Any:
    """A value for JSON (and, as text, CSV). `safe_ints`: integers beyond 2^53 (OMOP's 64-bit person and
    visit ids) become strings, for browsers, which would round 4783904755296699562 to ...9000, a patient that
    does not exist. Exact decimals stay exact: whole ones are integers (DuckDB's sum() of integers is a
    128-bit integer, exported as 20044587.0 before), others numbers only when a double holds them exactly."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        return v if not safe_ints or -JS_SAFE_INT <= v <= JS_SAFE_INT else str(v)
    if isinstance(v, float):
        return None if math.isnan(v) or math.isinf(v) else v
    if isinstance(v, dt.datetime):
        return v.isoformat(sep=" ")
    if isinstance(v, (dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, dt.timedelta):  # PostgreSQL's interval, through psycopg: printed as PostgreSQL prints it
        us = v // dt.timedelta(microseconds=1)
        days = int(us / 86_400_000_000)  # toward zero: -4 days -10:43:02, not Python's -5 days, 13:16:58
        return interval_text(0, days, (us - days * 86_400_000_000) * 1000)
    if isinstance(v, decimal.Decimal):
        if not v.is_finite():
            return None
        if v == v.to_integral_value():
            return jsonable(int(v), safe_ints=safe_ints)
        f = float(v)
        return f if decimal.Decimal(repr(f)) == v else str(v)
    if isinstance(v, bytes):
        return v.hex()
    if type(v).__name__ == "MonthDayNano" and len(v) == 3:  # pyarrow's interval (DuckDB's INTERVAL)
        return interval_text(*v)
    if isinstance(v, (list, tuple)):
        return [jsonable(x, safe_ints=safe_ints) for x in v]
    if isinstance(v, dict):
        return {str(k): jsonable(x, safe_ints=safe_ints) for k, x in v.items()}
    return str(v)


def text(v: Any) -> str:
    """A CSV cell: missing (and NaN) empty, everything else as jsonable gives it, exactly."""
    j = jsonable(v, safe_ints=False)
    return "" if j is None else j if isinstance(j, str) else str(j)
