"""Access guide and per-dataset check; 401/403 mapped to the step that fixes them."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from mimiclab.catalog import CatalogError
from mimiclab.cli import app
from mimiclab.physionet import AccessDeniedError, AuthError, check_access, download, guide, reachable
from mimiclab.physionet.credentials import Credentials

from fixtures_physionet import *  # noqa: F403
from fixtures_physionet import (
    CRED_SLUG,
    CRED_VERSION,
    DEAD_URL,
    NOACCESS_PASSWORD,
    NOACCESS_USER,
    PASSWORD,
    USER,
)


def test_guide_for_credentialed_dataset_has_every_step_with_links():
    text = guide("some-credentialed-project", "3.1")
    for needle in ("physionet.org/register/", "physionet.org/settings/credentialing/", "reference",
                   "Data or Specimens Only Research", "physionet.org/settings/training/", "report",
                   "physionet.org/sign-dua/some-credentialed-project/3.1/", "mimiclab login"):
        assert needle in text, needle


def test_guide_for_open_demo_says_no_login():
    text = guide("mimic-iv-demo")
    assert "Open access" in text and "sign-dua" not in text and "mimiclab download mimic-iv-demo" in text


def test_guide_unknown_slug_without_version_suggests():
    with pytest.raises(CatalogError, match="mimic-iv-demo"):
        check_access("mimic-iv-dem")


@pytest.mark.parametrize(
    ("creds", "ua", "state"),
    [
        ((USER, PASSWORD), None, "allowed"),
        ((USER, "wrong"), None, "bad-credentials"),
        (("mallory", PASSWORD), None, "bad-credentials"),
        ((USER, PASSWORD), "curl/8.5", "bad-credentials"),  # right password, refused User-Agent
        ((NOACCESS_USER, NOACCESS_PASSWORD), None, "forbidden"),
        (None, None, "no-credentials"),
    ],
)
def test_check_access_states(physionet, monkeypatch, creds, ua, state):
    if ua:
        monkeypatch.setenv("MIMICLAB_USER_AGENT", ua)
    c = Credentials(*creds) if creds else None
    st = check_access(CRED_SLUG, CRED_VERSION, credentials=c, mirror=physionet.url)
    assert st.state == state, st.message
    assert st.ok == (state == "allowed")
    assert PASSWORD not in st.message
    if state == "forbidden":
        assert f"sign-dua/{CRED_SLUG}/{CRED_VERSION}/" in st.message and "credentialing" in st.message
    if ua:
        assert "Wget/" in st.message and ua in st.message
    if state == "bad-credentials" and not ua:
        assert "mimiclab login" in st.message


def test_check_access_open_dataset_and_no_auth_sent(physionet):
    st = check_access("mimic-iv-demo", "2.2", credentials=Credentials(USER, PASSWORD), mirror=physionet.url)
    assert st.state == "open"
    assert all(r["authorization"] is None for r in physionet.requests)


def test_check_access_uses_stored_credentials(physionet, monkeypatch):
    monkeypatch.setenv("PHYSIONET_USERNAME", USER)
    monkeypatch.setenv("PHYSIONET_PASSWORD", PASSWORD)
    assert check_access(CRED_SLUG, CRED_VERSION, mirror=physionet.url).state == "allowed"


def test_check_access_unreachable_and_not_found(physionet, data_root):
    assert check_access(CRED_SLUG, CRED_VERSION, mirror=DEAD_URL, timeout=2).state == "unreachable"
    st = check_access("no-such-project", "1.0", mirror=physionet.url)
    assert st.state == "not-found"
    assert check_access("mimic-iv-demo", "2.2", mirror=str(data_root)).state == "open"


def test_unknown_version_of_catalog_dataset_is_a_catalog_error(physionet):
    with pytest.raises(CatalogError, match=r"2\.2"):
        check_access("mimic-iv-demo", "9.9", mirror=physionet.url)


def test_reachable(physionet, data_root):
    assert reachable(physionet.url)
    assert not reachable(DEAD_URL, timeout=1)
    assert reachable(str(data_root))
    assert not reachable("/no/such/folder")


def test_download_401_and_403_map_to_steps(physionet, tmp_path):
    with pytest.raises(AuthError, match="mimiclab login"):
        download(CRED_SLUG, CRED_VERSION, mirror=physionet.url, dest=tmp_path / "a", progress=False)
    with pytest.raises(AuthError, match="wrong username/password"):
        download(CRED_SLUG, CRED_VERSION, mirror=physionet.url, dest=tmp_path / "b", progress=False,
                 credentials_=Credentials(USER, "nope"))
    with pytest.raises(AccessDeniedError) as ei:
        download(CRED_SLUG, CRED_VERSION, mirror=physionet.url, dest=tmp_path / "c", progress=False,
                 credentials_=Credentials(NOACCESS_USER, NOACCESS_PASSWORD))
    assert f"https://physionet.org/sign-dua/{CRED_SLUG}/{CRED_VERSION}/" in str(ei.value)
    assert f"https://physionet.org/content/{CRED_SLUG}/{CRED_VERSION}/" in str(ei.value)
    for d in ("a", "b", "c"):
        assert not (tmp_path / d).exists() or not any((tmp_path / d).rglob("*.csv.gz"))


def test_cli_access_one_dataset(physionet, monkeypatch):
    monkeypatch.setenv("PHYSIONET_USERNAME", NOACCESS_USER)
    monkeypatch.setenv("PHYSIONET_PASSWORD", NOACCESS_PASSWORD)
    res = CliRunner().invoke(app, ["access", CRED_SLUG, "--version", CRED_VERSION, "--mirror", physionet.url])
    assert res.exit_code == 2, res.output
    assert "forbidden" in res.output and "sign-dua" in res.output
    monkeypatch.setenv("PHYSIONET_USERNAME", USER)
    monkeypatch.setenv("PHYSIONET_PASSWORD", PASSWORD)
    res = CliRunner().invoke(app, ["access", CRED_SLUG, "--version", CRED_VERSION, "--mirror", physionet.url])
    assert res.exit_code == 0, res.output
    assert "allowed" in res.output and PASSWORD not in res.output


def test_cli_access_all_datasets(physionet):
    res = CliRunner().invoke(app, ["access", "--mirror", physionet.url])
    assert res.exit_code == 0, res.output
    assert "mimic-iv-demo" in res.output and "open" in res.output
    assert "mimiclab login" in res.output  # no credentials configured
