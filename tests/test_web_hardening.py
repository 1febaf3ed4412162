"""The workbench as an attacker and a careless user meet it: every endpoint that takes SQL or a cohort spec
refuses file reads, file writes and statement smuggling (and no file appears); no request can reach an
unsandboxed connection; heavy work is capped, queued, and stopped when its client leaves or the server stops;
the token is on by default; malformed input is a 400 with a message, never a 500.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from mimiclab.load import build
from mimiclab.web import create_app
from mimiclab.web.core import Limits

SLUG = "mimic-iv-demo"
LOCAL = "http://127.0.0.1"
SLOW = "SELECT sum(hash(a)) AS subject_id FROM range(100000000000) t(a)"  # minutes of work on any machine


@pytest.fixture(scope="module")
def home(demo_dir, tmp_path_factory):
    h = tmp_path_factory.mktemp("hardhome")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MIMICLAB_HOME", str(h))
        build(SLUG, source=demo_dir)
        yield h


@pytest.fixture(scope="module")
def client(home):
    with TestClient(create_app(dataset=SLUG), base_url=LOCAL) as c:
        yield c


def _hostile(target: Path) -> dict[str, str]:
    """Queries that would read /etc/passwd or write into `target` if they ran outside the sandbox."""
    return {
        "read_text": "SELECT error(content) AS subject_id FROM read_text('/etc/passwd')",
        "read_csv": "SELECT column0 AS subject_id FROM read_csv('/etc/passwd', header=false)",
        "summarize": "SUMMARIZE '/etc/passwd'",
        "from_path": "SELECT * FROM '/etc/passwd'",
        "copy": f"COPY (SELECT 1 AS subject_id) TO '{target / 'copy.csv'}'",
        "multi": f"SELECT 1 AS subject_id; COPY (SELECT 1) TO '{target / 'multi.csv'}'",
        "cte_close": (f"SELECT 1 AS subject_id) q))) SELECT 1 AS step, 1 AS n; COPY (SELECT 1) TO "
                      f"'{target / 'x.sh'}'; WITH q AS (SELECT 1 AS subject_id"),
        "cte_close_2": (f"SELECT subject_id FROM mimiciv_hosp.patients) q)) SELECT 1; COPY (SELECT 1) TO "
                        f"'{target / 'y.sh'}' --"),
    }


def _spec(query: str) -> dict:
    return {"name": "hostile", "unit": "patient", "include": [{"type": "sql", "query": query}]}


def _no_leak(r: httpx.Response, target: Path) -> None:
    assert r.status_code in (400, 422), (r.status_code, r.text[:300])
    assert "root:" not in r.text and "/bin/" not in r.text, r.text[:300]
    assert not list(target.iterdir()), list(target.iterdir())


@pytest.mark.parametrize("name", list(_hostile(Path("/x"))))
def test_every_sql_and_spec_endpoint_refuses_file_access_and_smuggling(client, tmp_path, name):
    target = tmp_path / "out"
    target.mkdir()
    q = _hostile(target)[name]
    _no_leak(client.post(f"/api/datasets/{SLUG}/sql", json={"sql": q}), target)
    _no_leak(client.get(f"/api/datasets/{SLUG}/sql.csv", params={"sql": q}), target)
    for ep in ("run", "report", "subset"):
        _no_leak(client.post(f"/api/datasets/{SLUG}/cohort/{ep}", json={"spec": _spec(q)}), target)
    _no_leak(client.post("/api/cohort/spec.yaml", json={"spec": _spec(q)}), target)
    _no_leak(client.post("/api/cohort/parse", json={"text": json.dumps(_spec(q))}), target)


def test_the_sandboxed_store_itself_refuses_what_the_statement_check_would(home, tmp_path):
    """The second wall on its own: the store the workbench uses, called directly (no sqlguard)."""
    from mimiclab.errors import QueryError
    from mimiclab.sources.registry import find

    st = find(SLUG).open(sandbox=True, max_seconds=5)
    try:
        for name, q in _hostile(tmp_path).items():
            if name.startswith("cte_close"):  # smuggling needs a surrounding statement: the store sees one text
                q = f"WITH x AS ({q}) SELECT * FROM x"
            with pytest.raises(QueryError):
                st.arrow(q)
        assert not list(tmp_path.iterdir())
        # DuckDB always allows its temp folder; it must be private to the store, not <cwd>/.tmp
        tmp = st.arrow("SELECT current_setting('temp_directory') AS t").column(0)[0].as_py()
        assert not tmp.startswith(os.getcwd()) and (os.stat(tmp).st_mode & 0o077) == 0
    finally:
        st.close()


def test_a_file_in_the_cwd_temp_folder_is_not_readable(home, tmp_path, monkeypatch):
    from mimiclab.errors import QueryError
    from mimiclab.sources.registry import find

    monkeypatch.chdir(tmp_path)
    (tmp_path / ".tmp").mkdir()
    (tmp_path / ".tmp" / "secret.csv").write_text("a\nsecret-value\n")
    st = find(SLUG).open(sandbox=True, max_seconds=5)
    try:
        with pytest.raises(QueryError):
            st.arrow(f"SELECT * FROM read_csv('{tmp_path / '.tmp' / 'secret.csv'}')")
    finally:
        st.close()


def test_no_request_opens_an_unsandboxed_store(home, monkeypatch, tmp_path):
    """Every data endpoint, cohort report and subset included, runs on sandboxed stores only."""
    from mimiclab.store.duckdb_store import DuckDBStore

    opened = []
    real = DuckDBStore.__init__

    def spy(self, path, *a, sandbox_dir=None, **kw):
        opened.append(sandbox_dir)
        real(self, path, *a, sandbox_dir=sandbox_dir, **kw)

    monkeypatch.setattr(DuckDBStore, "__init__", spy)
    spec = {"name": "adults", "unit": "admission",
            "include": [{"type": "age", "min": 18},
                        {"type": "sql", "query": "SELECT hadm_id FROM mimiciv_hosp.admissions WHERE hadm_id > 0"}]}
    with TestClient(create_app(dataset=SLUG), base_url=LOCAL) as c:
        pid = c.get(f"/api/datasets/{SLUG}/patients").json()["patients"][0]["subject_id"]
        calls = [
            c.post(f"/api/datasets/{SLUG}/sql", json={"sql": "SELECT count(*) FROM mimiciv_hosp.admissions"}),
            c.get(f"/api/datasets/{SLUG}/sql.csv", params={"sql": "SELECT 1 AS a"}),
            c.get(f"/api/datasets/{SLUG}/tables/mimiciv_hosp.admissions/rows"),
            c.get(f"/api/datasets/{SLUG}/tables/mimiciv_hosp.admissions/count", params={"f": "admission_type:eq:URGENT"}),
            c.get(f"/api/datasets/{SLUG}/tables/mimiciv_hosp.admissions/stats", params={"column": "admission_type"}),
            c.get(f"/api/datasets/{SLUG}/tables/mimiciv_hosp.admissions/export.csv"),
            c.get(f"/api/datasets/{SLUG}/distribution", params={"table": "mimiciv_hosp.patients", "column": "anchor_age"}),
            c.get(f"/api/datasets/{SLUG}/cohort/suggest", params={"criterion": "diagnosis", "param": "codes", "q": "I50"}),
            c.post(f"/api/datasets/{SLUG}/cohort/run", json={"spec": spec}),
            c.post(f"/api/datasets/{SLUG}/cohort/report", json={"spec": spec}),
            c.post(f"/api/datasets/{SLUG}/cohort/subset", json={"spec": spec}),
            c.get(f"/api/datasets/{SLUG}/patients/{pid}"),
        ]
    assert [r.status_code for r in calls] == [200] * len(calls), [(r.url.path, r.text[:200]) for r in calls if r.status_code != 200]
    assert opened and all(d is not None for d in opened), opened


def test_routes_get_builds_that_cannot_open_a_connection(client):
    from mimiclab.web import core

    bench = client.app.state.workbench
    b = bench.build(SLUG)
    assert not hasattr(b, "open") and not any(hasattr(x, "open") for x in bench.builds())
    assert not hasattr(bench.api(SLUG).build, "open")
    web = Path(core.__file__).parent
    for f in web.glob("*.py"):
        text = f.read_text()
        assert "import duckdb" not in text, f
        assert not re.search(r"registry\.(find|builds)\(|\bBuild\(", text) or f.name == "core.py", f
        assert ".open(sandbox" not in text or f.name == "core.py", f


# ------------------------------------------------------------------------------------------- limits
def test_csv_export_stops_at_its_time_limit(home):
    with TestClient(create_app(dataset=SLUG, limits=Limits(export_seconds=1, sql_seconds=1)), base_url=LOCAL) as c:
        t0 = time.monotonic()
        r = c.get(f"/api/datasets/{SLUG}/sql.csv", params={"sql": SLOW})
        took = time.monotonic() - t0
    assert r.status_code == 400 and "time limit" in r.json()["error"], r.text
    assert took < 5, took


def test_csv_export_refuses_more_than_its_size_cap_with_a_message(home):
    with TestClient(create_app(dataset=SLUG, limits=Limits(csv_bytes=200_000)), base_url=LOCAL) as c:
        r = c.get(f"/api/datasets/{SLUG}/tables/mimiciv_hosp.labevents/export.csv")
        assert r.status_code == 400 and "larger than" in r.json()["error"], r.text[:300]
        small = c.get(f"/api/datasets/{SLUG}/tables/mimiciv_hosp.patients/export.csv")
        assert small.status_code == 200 and small.text.count("\n") == 101  # header + the 100 patients


def test_cohort_report_has_a_time_limit(home):
    spec = _spec(f"SELECT subject_id FROM mimiciv_hosp.patients WHERE ({SLOW.replace(' AS subject_id', '')}) > 0")
    with TestClient(create_app(dataset=SLUG, limits=Limits(export_seconds=1, sql_seconds=1)), base_url=LOCAL) as c:
        t0 = time.monotonic()
        r = c.post(f"/api/datasets/{SLUG}/cohort/report", json={"spec": spec})
        assert time.monotonic() - t0 < 6
    assert r.status_code == 400 and "time limit" in r.json()["error"], r.text[:300]


class _Served:
    """The workbench on a free port, served by uvicorn in a thread (the real ASGI server: disconnects,
    concurrency)."""

    def __init__(self, limits: Limits):
        import uvicorn

        self.app = create_app(dataset=SLUG, limits=limits)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                break
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.app.state.workbench.cancel_all()
        self.server.should_exit = True
        self.thread.join(timeout=20)


def test_work_stops_when_the_client_goes_away(home):
    srv = _Served(Limits(sql_seconds=60))
    try:
        bench = srv.app.state.workbench
        body = json.dumps({"sql": SLOW}).encode()
        with socket.create_connection(("127.0.0.1", srv.port)) as s:
            s.sendall(f"POST /api/datasets/{SLUG}/sql HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                      f"content-length: {len(body)}\r\n\r\n".encode() + body)
            for _ in range(100):
                if bench.running:
                    break
                time.sleep(0.05)
            assert bench.running == 1
        t0 = time.monotonic()  # the client has gone
        while bench.running and time.monotonic() - t0 < 10:
            time.sleep(0.05)
        assert bench.running == 0 and time.monotonic() - t0 < 3
    finally:
        srv.stop()


def test_heavy_requests_queue_and_light_ones_stay_fast(home):
    srv = _Served(Limits(sql_seconds=2, heavy_jobs=2, heavy_wait=30))
    try:
        codes: list[int] = []

        def heavy() -> None:
            codes.append(httpx.post(f"{srv.url}/api/datasets/{SLUG}/sql", json={"sql": SLOW}, timeout=60).status_code)

        threads = [threading.Thread(target=heavy) for _ in range(6)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        assert srv.app.state.workbench.running == 2  # the rest wait without holding a worker thread
        t0 = time.monotonic()
        light = [httpx.get(f"{srv.url}{p}", timeout=30) for p in
                 ("/api/datasets", f"/api/datasets/{SLUG}/dictionary", f"/d/{SLUG}/sql", f"/api/datasets/{SLUG}/patients")]
        took = time.monotonic() - t0
        assert [r.status_code for r in light] == [200] * 4 and took < 2.0, took
        for t in threads:
            t.join(timeout=60)
        assert codes.count(400) == 6  # each stopped at its own time limit, none lost
    finally:
        srv.stop()


def test_too_many_waiting_heavy_requests_get_busy_not_a_hang(home):
    srv = _Served(Limits(sql_seconds=3, heavy_jobs=1, heavy_wait=0.5))
    try:
        first = threading.Thread(target=lambda: httpx.post(f"{srv.url}/api/datasets/{SLUG}/sql", json={"sql": SLOW}, timeout=30))
        first.start()
        time.sleep(0.5)
        r = httpx.post(f"{srv.url}/api/datasets/{SLUG}/sql", json={"sql": "SELECT 1"}, timeout=30)
        assert r.status_code == 503 and "busy" in r.json()["error"]
        first.join(timeout=30)
    finally:
        srv.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sigterm_stops_the_server_during_a_long_query(home):
    port = _free_port()
    env = dict(os.environ, MIMICLAB_HOME=str(home))
    p = subprocess.Popen([sys.executable, "-m", "mimiclab", "serve", "--dataset", SLUG, "--port", str(port),
                          "--no-browser", "--no-token"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(300):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/datasets", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        threading.Thread(target=lambda: _quiet_post(f"http://127.0.0.1:{port}/api/datasets/{SLUG}/sql", SLOW),
                         daemon=True).start()
        time.sleep(1.0)
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=15)
        assert time.monotonic() - t0 < 8
        assert "terminate called" not in p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def _quiet_post(url: str, sql: str) -> None:
    with contextlib.suppress(httpx.HTTPError):
        httpx.post(url, json={"sql": sql}, timeout=30)


# ------------------------------------------------------------------------------------------- token
def _capture_serve(monkeypatch):
    import uvicorn

    seen: dict = {}

    def fake_run(self, sockets=None):
        seen["app"] = self.config.app
        seen["sockets"] = sockets

    monkeypatch.setattr(uvicorn.Server, "run", fake_run)
    return seen


def test_a_token_is_required_by_default_on_loopback_too(home, monkeypatch):
    from mimiclab import web

    seen = _capture_serve(monkeypatch)
    out: list[str] = []
    web.serve(dataset=SLUG, host="127.0.0.1", port=_free_port(), open_browser=False, echo=out.append)
    token = re.search(r"token=([\w-]+)", out[0]).group(1)
    assert len(token) >= 24 and seen["app"].state.token == token
    with TestClient(seen["app"], base_url=LOCAL) as c:
        assert c.get("/api/datasets").status_code == 401
        assert c.get("/api/datasets", headers={"authorization": f"Bearer {token}"}).status_code == 200
    out.clear()
    web.serve(dataset=SLUG, host="127.0.0.1", port=_free_port(), open_browser=False, echo=out.append, no_token=True)
    assert "token" not in out[0] and seen["app"].state.token is None


def test_no_token_is_refused_off_loopback_and_loopback_is_decided_by_address(home, monkeypatch):
    from mimiclab import web
    from mimiclab.web import security

    _capture_serve(monkeypatch)
    with pytest.raises(web.StartError, match="not a loopback"):
        web.serve(dataset=SLUG, host="0.0.0.0", port=_free_port(), open_browser=False, echo=print, no_token=True)
    assert security.binds_loopback("localhost") and security.binds_loopback("::1")
    real = socket.getaddrinfo

    def lan(host, *a, **kw):  # a machine whose hosts file maps localhost.localdomain to its network address
        if host == "localhost.localdomain":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.168.1.20", 0))]
        return real(host, *a, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", lan)
    assert not security.binds_loopback("localhost.localdomain")


def test_token_from_environment_or_private_file_never_argv(home, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from mimiclab import web
    from mimiclab.cli import app

    got: dict = {}
    monkeypatch.setattr(web, "serve", lambda **kw: got.update(kw))
    r = CliRunner().invoke(app, ["serve", "--no-browser"], env={"MIMICLAB_TOKEN": "from-env-token"})
    assert r.exit_code == 0, r.output
    assert got["token"] == "from-env-token"
    f = tmp_path / "token"
    f.write_text("from-file-token\n")
    f.chmod(0o600)
    from mimiclab.web.security import TokenError, resolve_token

    assert resolve_token(token_file=f) == "from-file-token"
    f.chmod(0o644)
    with pytest.raises(TokenError, match="chmod 600"):
        resolve_token(token_file=f)
    assert resolve_token(no_token=True) is None and len(resolve_token()) >= 24


def test_api_refuses_cross_site_requests_get_included(client):
    url = f"/api/datasets/{SLUG}/sql.csv"
    r = client.get(url, params={"sql": "SELECT 1 AS a"}, headers={"sec-fetch-site": "cross-site"})
    assert r.status_code == 403
    r = client.get(f"/api/datasets/{SLUG}/tables/mimiciv_hosp.patients/export.csv", headers={"sec-fetch-site": "cross-site"})
    assert r.status_code == 403
    r = client.get(url, params={"sql": "SELECT 1 AS a"}, headers={"sec-fetch-site": "same-origin"})
    assert r.status_code == 200 and r.text.splitlines() == ["a", "1"]


def test_a_port_in_use_prints_no_url(home):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "mimiclab", "serve", "--dataset", SLUG, "--port", str(port),
                            "--no-browser"], capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, MIMICLAB_HOME=str(home)))
    assert r.returncode == 1 and "port is in use" in r.stderr + r.stdout
    assert "http://" not in r.stdout + r.stderr and "token" not in r.stdout + r.stderr


# ------------------------------------------------------------------------------------------- malformed input
@pytest.mark.parametrize("sql", ["SELECT 'unterminated", 'SELECT "unterminated', "SELECT " + "(" * 5000 + "1" + ")" * 5000,
                                 "SELECT " + "[" * 5000 + "1" + "]" * 5000, "SELECT 1e999", "\x00", "SELECT $$x"])
def test_malformed_sql_is_a_400_with_a_message(client, sql):
    for r in (client.post(f"/api/datasets/{SLUG}/sql", json={"sql": sql}),
              client.get(f"/api/datasets/{SLUG}/sql.csv", params={"sql": sql}),
              client.post(f"/api/datasets/{SLUG}/cohort/run", json={"spec": _spec(sql)})):
        assert r.status_code in (200, 400, 422), (sql[:30], r.status_code, r.text[:200])
        if r.status_code != 200:
            assert r.json()["error"]


def test_infinite_and_deep_numbers_and_specs_are_400(client):
    def post(body: str):
        return client.post(f"/api/datasets/{SLUG}/cohort/run", content=body, headers={"content-type": "application/json"})

    for crit in ('{"type":"age","min":1e999}', '{"type":"lab","labels":["Creatinine"],"above":1e999}',
                 '{"type":"icu_los","min":-1e999}'):
        r = post('{"spec":{"name":"x","unit":"stay","include":[' + crit + ']}}')
        assert r.status_code == 400 and "finite" in r.json()["error"], r.text[:300]
    r = client.post("/api/cohort/parse", json={"text": "[" * 5000})
    assert r.status_code == 400 and "nested" in r.json()["error"]
    for what in ("stats", "count", "rows"):
        r = client.get(f"/api/datasets/{SLUG}/tables/mimiciv_hosp.patients/{what}",
                       params={"column": "anchor_age", "f": "anchor_age:gt:1e999"})
        assert r.status_code == 400 and "SMALLINT" in r.json()["error"], (what, r.text[:200])


# ------------------------------------------------------------------------------------------- review findings
INJECT_LABEL = ("x\rstep_1 AS (SELECT * FROM step_0 WHERE error(query('SELECT 42 AS x')) IS NULL), junk AS "
                "(SELECT $Q$")
INJECT_QUERY = "SELECT subject_id FROM mimiciv_hosp.patients WHERE gender <> '$Q$ AS z FROM (SELECT 1 --'"


def test_a_label_or_value_cannot_leave_its_sql_comment(client, home, tmp_path):
    """Titles go into `-- ` comments of the compiled SQL: DuckDB ends a comment at \\r too."""
    from mimiclab.cohort import Cohort
    from mimiclab.sources.registry import find

    spec = {"name": "x", "unit": "patient", "include": [{"type": "sql", "label": INJECT_LABEL, "query": INJECT_QUERY}]}
    r = client.post(f"/api/datasets/{SLUG}/cohort/run", json={"spec": spec})
    # the label stays a label: the criterion runs as written (every patient's gender differs from that text)
    assert r.status_code == 200 and r.json()["n"] == 100 and "Invalid Input" not in r.text, r.text[:300]
    target = tmp_path / "pwned.csv"
    evil = dict(spec, include=[{"type": "sql", "query": INJECT_QUERY,
                                "label": f"x\r; COPY (SELECT 1) TO '{target}'; WITH q AS (SELECT $Q$"}])
    Cohort.run(find(SLUG), evil, allow_empty=True).close()  # the CLI's path: a Build
    assert not target.exists()
    vals = {"name": "v", "unit": "admission",
            "include": [{"type": "admission_type", "values": ["EW EMER.\r) OR error(query('SELECT 42')) IS NULL --"]}]}
    r = client.post(f"/api/datasets/{SLUG}/cohort/run", json={"spec": vals})
    assert r.status_code in (200, 400) and "Invalid Input" not in r.text and "syntax" not in r.text.lower(), r.text[:300]


def test_cli_cohorts_run_sandboxed(home):
    from mimiclab.cohort import Cohort
    from mimiclab.sources.registry import find

    c = Cohort.run(find(SLUG), {"name": "all", "unit": "patient", "include": [{"type": "age", "min": 0}]})
    try:
        assert c.store.sandboxed
    finally:
        c.close()


def test_huge_values_are_capped_by_size_not_only_rows(home):
    with TestClient(create_app(dataset=SLUG, limits=Limits(sql_bytes=8 * 2**20, csv_bytes=8 * 2**20)),
                    base_url=LOCAL) as c:
        t0 = time.monotonic()
        r = c.post(f"/api/datasets/{SLUG}/sql", json={"sql": "SELECT repeat('x', 1000000) AS s FROM range(1500)"})
        assert r.status_code == 200 and r.json()["truncated"] and len(r.content) < 20 * 2**20
        r = c.get(f"/api/datasets/{SLUG}/sql.csv", params={"sql": "SELECT repeat('x', 1000000) AS s FROM range(1200)"})
        assert r.status_code == 400 and "larger than" in r.json()["error"]
        assert time.monotonic() - t0 < 15


def test_explain_runs_only_what_a_select_would(home):
    from mimiclab.errors import QueryError
    from mimiclab.sources.registry import find

    st = find(SLUG).open(sandbox=True, max_seconds=5)
    try:
        for q in ("EXPLAIN ANALYZE CREATE TEMP TABLE t AS SELECT 1", "EXPLAIN ANALYZE SET VARIABLE x = 42",
                  "EXPLAIN ANALYZE CREATE TEMP MACRO m() AS 1"):
            with pytest.raises(QueryError):
                st.arrow(q)
        assert st.arrow("EXPLAIN SELECT count(*) FROM mimiciv_hosp.admissions").num_rows == 1
    finally:
        st.close()


def test_settings_and_local_paths_are_not_queryable(client):
    for q in ("SELECT * FROM duckdb_settings()", "SELECT current_setting('temp_directory')",
              "SELECT * FROM pragma_database_size()", "SELECT * FROM duckdb_databases()"):
        r = client.post(f"/api/datasets/{SLUG}/sql", json={"sql": q})
        assert r.status_code == 400 and "/tmp" not in r.text, (q, r.text[:200])


def test_unbuildable_yaml_values_are_400(client):
    for text in ("unit: patient\nname: 2001-13-45\n", "unit: patient\nname: " + "9" * 5000 + "\n"):
        r = client.post("/api/cohort/parse", json={"text": text})
        assert r.status_code == 400 and r.json()["kind"] == "SpecError", r.text[:200]


def test_same_site_pages_and_null_origins_are_refused(client):
    r = client.get(f"/api/datasets/{SLUG}/sql.csv", params={"sql": "SELECT 1"}, headers={"sec-fetch-site": "same-site"})
    assert r.status_code == 403
    r = client.post(f"/api/datasets/{SLUG}/sql", json={"sql": "SELECT 1"}, headers={"origin": "null"})
    assert r.status_code == 403
    r = client.post(f"/api/datasets/{SLUG}/sql", json={"sql": "SELECT 1"}, headers={"sec-fetch-site": "same-origin"})
    assert r.status_code == 200
