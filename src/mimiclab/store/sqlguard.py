"""The statement check for SQL that comes from a user: the workbench's SQL page and a cohort's `sql` criterion.

The sandboxed store already refuses writes, file access, ATTACH, INSTALL and setting changes (read-only
database, external access disabled, configuration locked) and runs one statement per call. This check is a
second, independent wall with clearer messages: exactly one statement, of a reading kind, that names no
file-reading function, file path or file-backed SUMMARIZE/DESCRIBE. Input it cannot parse (unterminated
strings, brackets nested beyond reason) is refused with a message, never an internal error.
"""

from __future__ import annotations

import logging
import re

import sqlglot
from sqlglot import exp

from mimiclab.errors import QueryError

MAX_SQL_CHARS = 100_000

# Statement kinds a reader needs. EXPLAIN is handled by checking the statement it explains.
_ALLOWED = (exp.Select, exp.SetOperation, exp.Describe, exp.Show, exp.Values, exp.Pivot, exp.Summarize)

# Table functions and scalar functions that reach outside the database (files, network, environment).
_DENY_PREFIXES = ("read_", "parquet_", "sqlite_", "postgres_", "mysql_", "iceberg_", "delta_", "st_read",
                  "json_execute", "load_", "install_", "pragma_")
_DENY_NAMES = {"glob", "sniff_csv", "query", "query_table", "getenv", "read_text", "read_blob", "httpfs",
               "from_csv_auto", "csv_scan", "parquet_scan", "json_scan", "delta_scan", "iceberg_scan",
               "duckdb_secrets", "which_secret", "enable_profiling", "checkpoint", "force_checkpoint",
               # settings and files of this machine (paths, memory), not the dataset's business
               "duckdb_settings", "current_setting", "duckdb_databases", "duckdb_extensions",
               "duckdb_temporary_files", "getvariable", "duckdb_memory", "duckdb_log", "duckdb_logs"}
_EXPLAIN = re.compile(r"^\s*explain(\s+analyze)?\s+", re.IGNORECASE)
# A quoted "table" that looks like a path or URL is a file scan in DuckDB (`FROM '/etc/passwd'`).
_FILEISH = re.compile(r"[/\\:~.]")
MAX_NESTING = 200  # brackets deeper than any real query; deeper input would exhaust the parser's recursion


def _fname(f: exp.Func) -> str:
    if isinstance(f, exp.Anonymous):
        return str(f.name).lower()
    return f.sql_name().lower()


def check(sql: str, max_chars: int | None = MAX_SQL_CHARS) -> str:
    """Return the statement (stripped of a trailing ';') if it is one read-only query, else raise QueryError."""
    text = (sql or "").strip()
    if not text:
        raise QueryError("the query is empty: write a SELECT statement.")
    if max_chars is not None and len(text) > max_chars:
        raise QueryError(f"the query is longer than {max_chars:,} characters.")
    body = text
    m = _EXPLAIN.match(body)
    if m:
        body = body[m.end():]
    stmt = one_statement(body, "duckdb")
    if not isinstance(stmt, _ALLOWED):
        kind = stmt.key.upper() if isinstance(stmt, exp.Expression) else "this"
        if isinstance(stmt, exp.Command):
            kind = str(stmt.this).upper()
        raise QueryError(f"{kind} statements are not allowed here: the workbench is read-only "
                         "(SELECT, WITH, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN).")
    if isinstance(stmt, (exp.Summarize, exp.Describe)) and isinstance(stmt.this, exp.Literal):
        raise QueryError(f"{stmt.key.upper()} of a file ({stmt.this.name!r}) is not allowed here: "
                         "name a table of the dataset.")
    if stmt.find(exp.Into) is not None or stmt.args.get("into") is not None:
        raise QueryError("SELECT ... INTO is not allowed: the workbench is read-only.")
    for node in stmt.walk():
        if isinstance(node, (exp.Insert, exp.Update, exp.Delete, exp.Create, exp.Drop, exp.Alter, exp.Copy,
                             exp.Attach, exp.Detach, exp.Install, exp.Set, exp.Pragma, exp.Command, exp.Merge)):
            raise QueryError(f"{node.key.upper()} is not allowed here: the workbench is read-only.")
        if isinstance(node, exp.Func):
            name = _fname(node)
            if name in _DENY_NAMES or name.startswith(_DENY_PREFIXES):
                raise QueryError(f"{name}() reads files or settings outside the database and is not allowed "
                                 "here; query the dataset's tables (e.g. mimiciv_hosp.admissions).")
        if (isinstance(node, exp.Table) and isinstance(node.this, exp.Identifier) and node.this.quoted
                and _FILEISH.search(node.name or "")):
            raise QueryError(f"reading files ({node.name!r}) is not allowed here: query the dataset's tables.")
    return text.rstrip().rstrip(";").rstrip()


def one_statement(text: str, dialect: str) -> exp.Expr:
    """The single statement `text` holds, parsed in `dialect`; QueryError for anything else: brackets nested
    beyond reason, an unclosed string, a syntax error, or more (or fewer) than one statement."""
    if _nesting(text) > MAX_NESTING:
        raise QueryError(f"brackets are nested more than {MAX_NESTING} deep: simplify the query.")
    log = logging.getLogger("sqlglot")
    level = log.level
    log.setLevel(logging.ERROR)  # "falling back to parsing as a Command" is our business, not the log's
    try:
        statements = [s for s in sqlglot.parse(text, read=dialect) if s is not None]
    except sqlglot.errors.TokenError:
        raise QueryError("could not read the query: a string or quoted name is not closed "
                         "(check the quotes).") from None
    except sqlglot.errors.SqlglotError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "syntax error"
        raise QueryError(f"could not parse the query: {first}") from None
    except RecursionError:
        raise QueryError("the query is nested too deeply to check: simplify it.") from None
    finally:
        log.setLevel(level)
    if len(statements) != 1:
        raise QueryError(f"one statement at a time, please (found {len(statements)}).")
    return statements[0]


def _nesting(text: str) -> int:
    """Deepest bracket nesting (outside nothing: a rough bound, strings included, is enough here)."""
    depth = deepest = 0
    for ch in text:
        if ch == "(" or ch == "[":
            depth += 1
            deepest = max(deepest, depth)
        elif (ch == ")" or ch == "]") and depth:
            depth -= 1
    return deepest
