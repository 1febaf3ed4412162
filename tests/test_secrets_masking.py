"""Passwords in mirror URLs and PostgreSQL connection strings never show, in any spelling, anywhere we print.

The hostile passwords hold what regex-based masking gets wrong: spaces, quotes, `@`, a literal `%40`,
backslashes and non-ASCII. Each leak check looks for the password as is, percent-encoded and percent-decoded.
"""

from __future__ import annotations

import subprocess
import sys
import traceback
import urllib.parse

import pytest

from mimiclab import redact
from mimiclab.errors import MimiclabError

from fixtures_physionet import *  # noqa: F403
from fixtures_physionet import CRED_SLUG, CRED_VERSION, subprocess_env

HOSTILE = ["p@ss w0rd", "it's \"quoted\" 'x'", "a@b@c:d", "p%40ssword", "pässwörd✓ ünï", "back\\slash='q' x",
           "semi;colon&password=z"]


def _spellings(pw: str) -> set[str]:
    forms = {pw, urllib.parse.quote(pw, safe=""), urllib.parse.quote_plus(pw), urllib.parse.unquote(pw)}
    return {f for f in forms if len(f) >= 3}


def _assert_clean(text: str, pw: str, where: str = "") -> None:
    for f in _spellings(pw):
        assert f not in text, f"password leaked as {f!r} in {where}: {text!r}"


def _libpq_quote(v: str) -> str:
    return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _dsns(pw: str) -> list[str]:
    q = urllib.parse.quote(pw, safe="")
    return [
        f"host=db.example.org port=5432 user=alice password={_libpq_quote(pw)} dbname=mimic",
        f"host=db.example.org password = {_libpq_quote(pw)}   user = alice",
        f"password={_libpq_quote(pw)}",
        f"postgresql://alice:{q}@db.example.org:5432/mimic",
        f"postgres://alice:{q}@db.example.org/mimic?sslmode=require",
        f"postgresql://alice@db.example.org/mimic?password={q}&sslmode=require",
    ]


@pytest.mark.parametrize("pw", HOSTILE)
def test_dsn_masking_by_libpq_rules(pw):
    pytest.importorskip("psycopg")
    from psycopg.conninfo import conninfo_to_dict

    from mimiclab.store.postgres_store import redact as pg_redact

    for dsn in _dsns(pw):
        assert conninfo_to_dict(dsn)["password"] == pw  # the fixture itself is a valid DSN for that password
        shown = pg_redact(dsn)
        _assert_clean(shown, pw, dsn)
        assert "db.example.org" in shown or dsn.startswith("password="), shown
        assert "***" in shown


@pytest.mark.parametrize("pw", HOSTILE + ["pa/ss#wo?rd"])
def test_url_masking(pw):
    for u in (f"https://alice:{urllib.parse.quote(pw, safe='')}@mirror.example.org/physionet/",
              f"https://alice:{pw}@mirror.example.org/x"):
        shown = redact.url(u)
        _assert_clean(shown, pw, u)
        assert shown.endswith(("mirror.example.org/physionet/", "mirror.example.org/x")), shown


def test_unparseable_dsn_is_not_shown_nor_quoted_by_libpq():
    pytest.importorskip("psycopg")
    from mimiclab.store.postgres_store import PostgresStore

    bad = "host=127.0.0.1 port=1 password=my hostilesecret dbname=x"  # unquoted space: libpq quotes the word
    assert "hostilesecret" not in redact.dsn(bad)
    with pytest.raises(MimiclabError) as ei:
        PostgresStore(bad)
    text = "".join(traceback.format_exception(ei.value))
    assert "hostilesecret" not in text and "could not be parsed" in str(ei.value)


@pytest.mark.parametrize("pw", HOSTILE[:3])
def test_connect_failure_and_store_repr_hide_password(pw):
    pytest.importorskip("psycopg")
    from mimiclab.store.postgres_store import PostgresStore

    q = urllib.parse.quote(pw, safe="")
    for dsn in (f"postgresql://nobody:{q}@127.0.0.1:1/x?connect_timeout=2",
                f"host=127.0.0.1 port=1 user=nobody password={_libpq_quote(pw)} connect_timeout=2"):
        with pytest.raises(MimiclabError) as ei:
            PostgresStore(dsn)
        text = "".join(traceback.format_exception(ei.value)) + repr(ei.value)
        _assert_clean(text, pw, "connect error")
        assert "127.0.0.1" in str(ei.value)


@pytest.mark.postgres
def test_live_store_repr_and_attributes_hide_password():
    psycopg = pytest.importorskip("psycopg")
    from mimiclab.store.postgres_store import PostgresStore

    pw = HOSTILE[0]
    dsn = f"postgresql://postgres:{urllib.parse.quote(pw, safe='')}@127.0.0.1:5432/postgres?connect_timeout=3"
    try:
        store = PostgresStore(dsn)
    except MimiclabError as exc:
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    try:
        shown = repr(store) + str(store.dsn) + repr(vars(store)) + repr(store._con.info.dsn)
        _assert_clean(shown, pw, "store repr")
        with pytest.raises(MimiclabError) as ei:
            store.arrow(f"SELECT '{pw.replace(chr(39), chr(39) * 2)}'::int")  # the driver quotes the value back
        _assert_clean(str(ei.value), pw, "query error")
    finally:
        store.close()
    assert psycopg


# --- PhysioNet mirror URLs with a login --------------------------------------------------------------------

HOSTILE_PN = ["p@ss w0rd", "it's \"q\" %40", "pässwörd✓", "a:b@c/d?e#f"]


@pytest.fixture()
def carol_server(data_root):
    from fixtures_physionet import PhysioNetServer

    servers = {}

    def make(pw):
        srv = PhysioNetServer(data_root, credentialed={CRED_SLUG}, users={"carol": pw},
                              grants={"carol": {CRED_SLUG}}).start()
        servers[pw] = srv
        return srv
    yield make
    for srv in servers.values():
        srv.stop()


def _login_url(srv, pw: str) -> str:
    return f"http://carol:{urllib.parse.quote(pw, safe='')}@127.0.0.1:{srv.port}/"


@pytest.mark.parametrize("pw", HOSTILE_PN)
def test_mirror_url_login_is_used_and_never_printed(carol_server, tmp_path, pw):
    from mimiclab.physionet import RetryPolicy, check_access, download

    srv = carol_server(pw)
    url = _login_url(srv, pw)
    res = download(CRED_SLUG, CRED_VERSION, tables="triage", mirror=url, dest=tmp_path / "d", progress=False)
    assert "ed/triage.csv.gz" in res.fetched  # the login in the URL was used (the slug is credentialed)
    _assert_clean(repr(res) + res.source, pw, "result")
    assert res.source.startswith(f"http://127.0.0.1:{srv.port}/files/")
    st = check_access(CRED_SLUG, CRED_VERSION, mirror=url)
    assert st.state == "allowed"
    _assert_clean(repr(st), pw, "access")
    # errors that name the URL: a file the server lost, a wrong password
    srv.faults.missing.add("ed/vitalsign.csv.gz")
    with pytest.raises(MimiclabError) as ei:
        download(CRED_SLUG, CRED_VERSION, tables="vitalsign", mirror=url, dest=tmp_path / "e", progress=False,
                 retry=RetryPolicy(attempts=2, backoff=0.01))
    assert "ed/vitalsign.csv.gz" in str(ei.value)
    _assert_clean("".join(traceback.format_exception(ei.value)), pw, "404 error")
    wrong = url.replace("carol:", "carol:x")
    with pytest.raises(MimiclabError) as ei:
        download(CRED_SLUG, CRED_VERSION, mirror=wrong, dest=tmp_path / "f", progress=False)
    _assert_clean("".join(traceback.format_exception(ei.value)), pw, "auth error")


@pytest.mark.parametrize("pw", HOSTILE_PN[:2])
def test_cli_plan_and_errors_never_print_mirror_password(carol_server, tmp_path, pw):
    srv = carol_server(pw)
    env = subprocess_env(tmp_path, COLUMNS="300")
    url = _login_url(srv, pw)
    cmd = [sys.executable, "-m", "mimiclab", "download", CRED_SLUG, "--version", CRED_VERSION, "--tables",
           "triage", "--dest", str(tmp_path / "d")]
    out = subprocess.run(cmd + ["--mirror", url, "--dry-run"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and f"127.0.0.1:{srv.port}/files/" in out.stdout, out.stdout + out.stderr
    _assert_clean(out.stdout + out.stderr, pw, "dry-run plan")
    # the same URL through the environment, and a URL that is no mirror at all
    env2 = dict(env, MIMICLAB_PHYSIONET_URL=url)
    out = subprocess.run(cmd + ["--verbose", "-q"], env=env2, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    _assert_clean(out.stdout + out.stderr, pw, "verbose download")
    bad = f"ftp://carol:{urllib.parse.quote(pw, safe='')}@127.0.0.1/"
    out = subprocess.run(cmd + ["--mirror", bad], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    _assert_clean(out.stdout + out.stderr, pw, "bad mirror error")


def test_malformed_login_url_is_refused_without_showing_it():
    from mimiclab.physionet import PhysioNetError, download

    with pytest.raises(PhysioNetError, match="percent-encoded") as ei:
        download(CRED_SLUG, CRED_VERSION, mirror="https://carol:pa/ss#wo@mirror.example.org/", progress=False)
    _assert_clean(str(ei.value), "pa/ss#wo")


def test_raw_at_signs_in_url_password():
    """`@` typed into a URL password without percent-encoding: libpq splits at the last @, so do we."""
    from mimiclab.store.postgres_store import redact as pg_redact

    for pw in ("p@ss@word", "p@ss:w@rd"):
        shown = pg_redact(f"postgresql://alice:{pw}@db.example.org:5432/mimic")
        assert shown == "postgresql://alice:***@db.example.org:5432/mimic"
        for part in ("ss@word", "ss:w", "w@rd", pw):
            assert part not in shown


@pytest.mark.parametrize("argv", [
    ["info", "postgresql://postgres:s3cretPW@127.0.0.1:5432/nodb"],  # a URL taken for a dataset name
    ["sql", "host=127.0.0.1 dbname=nodb user=postgres password='s3cret PW'", "select 1"],  # key=value, not a URL
    ["sql", "postgresql://postgres:s3cretPW@127.0.0.1:5432/nodb_x", "select 1"],
    ["patient", "postgresql://u:s3cretPW@127.0.0.1:1/x", "1"],
])
def test_no_cli_error_repeats_a_password_from_the_command_line(argv, tmp_path):
    """Whichever layer quotes the argument back (an unknown dataset name, a connection failure), the CLI's
    one error path takes every password on its command line out, in every spelling."""
    env = subprocess_env(tmp_path)
    r = subprocess.run([sys.executable, "-m", "mimiclab", *argv], capture_output=True, text=True, env=env, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode == 1 and "error:" in out, out
    assert "s3cret" not in out and "PW" not in out.replace("PWD", ""), out


def test_cli_errors_print_brackets_as_text(tmp_path):
    """Error messages are text, not rich markup: an install hint `pip install 'mimiclab[postgres]'` had printed
    as `pip install 'mimiclab'`."""
    env = subprocess_env(tmp_path)
    r = subprocess.run([sys.executable, "-m", "mimiclab", "info", "nosuch[postgres]"], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 1 and "nosuch[postgres]" in r.stderr, r.stderr


def test_a_very_short_password_hides_the_whole_message_not_each_letter(tmp_path):
    """Masking a one-letter password wherever it occurs garbled the message ('unknown d***t***set') and showed
    what the password was: the message is withheld instead."""
    r = subprocess.run([sys.executable, "-m", "mimiclab", "info", "postgresql://u:a@127.0.0.1:1/x"], capture_output=True,
                       text=True, env=subprocess_env(tmp_path), timeout=120)
    assert r.returncode == 1 and "not shown" in r.stderr and "***" not in r.stderr, r.stderr
