"""Credentials: env, ~/.netrc, keyring, 0600 file fallback; login/logout; the password never in repr."""

from __future__ import annotations

import contextlib
import os
import stat

import httpx
import pytest
from typer.testing import CliRunner

from mimiclab.cli import app
from mimiclab.physionet import credentials as cr
from mimiclab.physionet.client import auth_allowed, make_client, redact_headers, user_agent
from mimiclab.physionet.errors import CredentialsError, InsecureAuthError

from fixtures_physionet import *  # noqa: F403
from fixtures_physionet import PASSWORD, USER


def test_repr_and_str_hide_password():
    c = cr.Credentials(USER, PASSWORD, "env")
    assert PASSWORD not in repr(c) and PASSWORD not in str(c) and PASSWORD not in f"{c}"
    assert USER in repr(c)
    assert c.password == PASSWORD
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(c)


def test_nothing_configured_gives_none():
    assert cr.load() is None


def test_env_wins_over_netrc_and_keyring(monkeypatch, memory_keyring, tmp_path):
    (tmp_path / "home" / ".netrc").write_text("machine physionet.org login netrcuser password netrcpw\n")
    cr.store(cr.Credentials("kruser", "krpw"))
    monkeypatch.setenv("PHYSIONET_USERNAME", USER)
    monkeypatch.setenv("PHYSIONET_PASSWORD", PASSWORD)
    c = cr.load()
    assert (c.username, c.password, c.source) == (USER, PASSWORD, "env")
    monkeypatch.delenv("PHYSIONET_PASSWORD")  # half-set env is ignored
    c = cr.load()
    assert (c.username, c.password, c.source) == ("netrcuser", "netrcpw", "netrc")
    (tmp_path / "home" / ".netrc").unlink()
    c = cr.load()
    assert (c.username, c.password, c.source) == ("kruser", "krpw", "keyring")


def test_netrc_host_entry_and_other_hosts(tmp_path):
    netrc = tmp_path / "home" / ".netrc"
    netrc.write_text("machine example.org login other password otherpw\n"
                     "machine physionet.org login nu password npw\n")
    netrc.chmod(0o600)
    assert cr.load().username == "nu"
    assert cr.from_netrc("example.org").username == "other"
    # a mirror host without its own entry falls back to physionet.org's
    assert cr.load("mirror.invalid").username == "nu"


def test_bad_netrc_error_does_not_quote_password(tmp_path):
    netrc = tmp_path / "home" / ".netrc"
    netrc.write_text(f"machine physionet.org login nu password {PASSWORD} bogus_token\n")
    netrc.chmod(0o600)
    with pytest.raises(CredentialsError) as ei:
        cr.load()
    assert PASSWORD not in str(ei.value)
    assert ".netrc" in str(ei.value)


def test_store_in_keyring_and_delete(memory_keyring):
    where = cr.store(cr.Credentials(USER, PASSWORD))
    assert where == "the system keyring"
    assert memory_keyring.store[(cr.SERVICE, USER)] == PASSWORD
    assert not cr.credentials_file().exists()
    c = cr.load()
    assert (c.username, c.password, c.source) == (USER, PASSWORD, "keyring")
    # a new login with another user replaces the old one
    cr.store(cr.Credentials("carol", "pw2"))
    assert (cr.SERVICE, USER) not in memory_keyring.store
    assert cr.load().username == "carol"
    assert cr.delete() == ["the system keyring"]
    assert cr.load() is None and memory_keyring.store == {}


def test_store_falls_back_to_0600_file_without_keyring():
    where = cr.store(cr.Credentials(USER, PASSWORD))  # the isolation fixture installs keyring's fail backend
    path = cr.credentials_file()
    assert where == str(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    c = cr.load()
    assert (c.username, c.password, c.source) == (USER, PASSWORD, "file")
    assert cr.delete() == [str(path)]
    assert not path.exists() and cr.load() is None


def test_broken_keyring_backend_falls_back_to_file(memory_keyring):
    def boom(*a):
        raise RuntimeError("locked")

    memory_keyring.set_password = boom
    where = cr.store(cr.Credentials(USER, PASSWORD))
    assert where == str(cr.credentials_file())
    assert cr.load().source == "file"


def test_empty_credentials_refused():
    with pytest.raises(CredentialsError):
        cr.store(cr.Credentials(USER, ""))


def test_login_prompts_without_echo_and_logout(memory_keyring):
    runner = CliRunner()
    res = runner.invoke(app, ["login"], input=f"{USER}\n{PASSWORD}\n")
    assert res.exit_code == 0, res.output
    assert PASSWORD not in res.output  # hidden input is not echoed
    assert memory_keyring.store[(cr.SERVICE, USER)] == PASSWORD
    res = runner.invoke(app, ["logout"])
    assert res.exit_code == 0 and "Removed" in res.output
    assert cr.load() is None
    res = runner.invoke(app, ["logout"])
    assert "No stored credentials" in res.output


def test_login_file_fallback_via_cli():
    res = CliRunner().invoke(app, ["login", "--username", USER], input=f"{PASSWORD}\n")
    assert res.exit_code == 0, res.output
    assert PASSWORD not in res.output
    assert stat.S_IMODE(cr.credentials_file().stat().st_mode) == 0o600


def test_user_agent_default_and_override(monkeypatch):
    from mimiclab import __version__

    ua = user_agent()
    assert ua.startswith("Wget/") and f"mimiclab/{__version__}" in ua
    monkeypatch.setenv("MIMICLAB_USER_AGENT", "libwfdb/10.7 (custom)")
    assert user_agent() == "libwfdb/10.7 (custom)"


def test_auth_only_over_https_or_loopback():
    assert auth_allowed("https://physionet.org/files/x")
    assert auth_allowed("http://127.0.0.1:8000/files/x")
    assert auth_allowed("http://localhost/files/x")
    assert auth_allowed("http://[::1]:80/")
    assert not auth_allowed("http://physionet.org/files/x")
    assert not auth_allowed("http://10.0.0.5/files/x")


def test_client_never_sends_password_over_plain_http():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "secure.example" and request.url.path == "/redirect":
            return httpx.Response(302, headers={"Location": "http://secure.example/plain"})
        return httpx.Response(200, text="ok")

    creds = cr.Credentials(USER, PASSWORD)
    transport = httpx.MockTransport(handler)
    with make_client(creds, transport=transport) as client:
        with pytest.raises(InsecureAuthError) as ei:
            client.get("http://mirror.example/files/x")
        assert PASSWORD not in str(ei.value)
        assert seen == []  # refused before anything was sent
        r = client.get("https://secure.example/files/x")
        assert r.status_code == 200 and seen[-1].headers["authorization"].startswith("Basic ")
        assert seen[-1].headers["user-agent"].startswith("Wget/")
        # a redirect from https to plain http must not carry the password either
        seen.clear()
        with contextlib.suppress(InsecureAuthError):
            client.get("https://secure.example/redirect")
        assert all("authorization" not in r.headers for r in seen if r.url.scheme == "http")


def test_redacted_headers_and_trace():
    lines: list[str] = []
    transport = httpx.MockTransport(lambda req: httpx.Response(200, headers={"Set-Cookie": "sid=abc"}, text="x"))
    with make_client(cr.Credentials(USER, PASSWORD), transport=transport, trace=lines.append) as client:
        client.get("https://physionet.org/files/a")
    text = "\n".join(lines)
    assert "GET https://physionet.org/files/a" in text and "< 200" in text
    assert "authorization: <redacted>" in text.lower()
    assert "sid=abc" not in text
    import base64

    assert base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode() not in text
    assert ("authorization", "<redacted>") in [(k.lower(), v) for k, v in
                                                redact_headers(httpx.Headers({"Authorization": "Basic x"}))]


def test_isolation_is_in_place():
    # guards the guards: tests must never see the real keyring or a real netrc
    import keyring
    from keyring.backends import fail

    assert isinstance(keyring.get_keyring(), fail.Keyring)
    assert os.environ["NETRC"].endswith(".netrc") and not os.path.exists(os.environ["NETRC"])
