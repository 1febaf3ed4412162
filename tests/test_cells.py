"""mimiclab.cells: the one conversion of result values for JSON and CSV exports (hand-worked values)."""

from __future__ import annotations

import datetime as dt
import decimal

import pyarrow as pa
import pytest

from mimiclab import cells


@pytest.mark.parametrize(("months", "days", "ns", "want"), [
    (0, 5, 25_200 * 10**9, "5 days 07:00:00"),
    (0, 1, 0, "1 day"),
    (14, 0, 0, "1 year 2 months"),
    (0, 0, 0, "00:00:00"),
    (0, 0, 90_061_500_000_000, "25:01:01.5"),
    (0, -2, -3_600 * 10**9, "-2 days -01:00:00"),
])
def test_intervals_read_as_databases_print_them(months, days, ns, want):
    assert cells.interval_text(months, days, ns) == want
    # as DuckDB hands them over: Arrow's month-day-nano triple
    v = pa.array([pa.MonthDayNano([months, days, ns])], type=pa.month_day_nano_interval()).to_pylist()[0]
    assert cells.jsonable(v) == want == cells.text(v)


def test_numbers_keep_every_digit():
    assert cells.jsonable(decimal.Decimal("20044587")) == 20044587  # sum() of integers: HUGEINT, a Decimal in Arrow
    assert cells.jsonable(decimal.Decimal("1.10")) == 1.1
    assert cells.jsonable(decimal.Decimal("12345678901234567.89")) == "12345678901234567.89"  # no double holds it
    assert cells.jsonable(4783904755296699562) == "4783904755296699562"  # OMOP id: a string for browsers
    assert cells.jsonable(4783904755296699562, safe_ints=False) == 4783904755296699562
    assert cells.text(4783904755296699562) == "4783904755296699562"
    assert cells.jsonable(float("nan")) is None and cells.text(float("nan")) == "" and cells.text(None) == ""
    assert cells.text(0.1 + 0.2) == "0.30000000000000004"  # repr: the shortest text that reads back exactly
    assert cells.text(dt.datetime(2180, 1, 2, 3, 4, 5, 500000)) == "2180-01-02 03:04:05.500000"


@pytest.mark.parametrize(("td", "want"), [
    (dt.timedelta(days=4, hours=10, minutes=43, seconds=2), "4 days 10:43:02"),
    (-dt.timedelta(days=4, hours=10, minutes=43, seconds=2), "-4 days -10:43:02"),  # str(): -5 days, 13:16:58
    (dt.timedelta(hours=-3), "-03:00:00"),
    (dt.timedelta(days=1, microseconds=5), "1 day 00:00:00.000005"),
])
def test_timedeltas_from_postgresql_read_as_postgresql_prints_them(td, want):
    assert cells.jsonable(td) == want == cells.text(td)
