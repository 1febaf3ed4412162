"""Property: under any fault schedule, a download ends with every file byte-identical to the source, or a
clear failure naming files with only resumable `.part` files left — never a wrong file at a final path."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mimiclab.errors import MimiclabError
from mimiclab.physionet import RetryPolicy, download
from mimiclab.physionet.credentials import Credentials
from mimiclab.physionet.transfer import STATE

from fixtures_physionet import *  # noqa: F403
from fixtures_physionet import CRED_SLUG, CRED_VERSION, PASSWORD, USER, sums_of

FILES = ["LICENSE.txt", "ed/diagnosis.csv.gz", "ed/edstays.csv.gz", "ed/medrecon.csv.gz", "ed/pyxis.csv.gz",
         "ed/triage.csv.gz", "ed/vitalsign.csv.gz"]
RETRY = RetryPolicy(attempts=3, backoff=0.001, max_backoff=0.005)

fault = st.one_of(
    st.tuples(st.just("cut"), st.floats(0, 1)),
    st.tuples(st.just("status"), st.sampled_from([500, 502, 503, 504, 429]), st.integers(1, 4)),
    st.tuples(st.just("corrupt"), st.floats(0, 1), st.integers(1, 2)),
    st.tuples(st.just("missing")),
)
schedule = st.dictionaries(st.sampled_from(FILES), st.lists(fault, min_size=1, max_size=4), max_size=5)


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=schedule, jobs=st.integers(1, 4), random_cut=st.sampled_from([0.0, 0.0, 0.3]))
def test_any_fault_schedule_ends_verified_or_resumable(physionet, data_root, plan, jobs, random_cut):
    src = data_root / CRED_SLUG / CRED_VERSION
    sums = sums_of(data_root)
    physionet.faults.clear()
    physionet.faults.random_cut = random_cut
    for rel, faults in plan.items():
        size = (src / rel).stat().st_size
        for f in faults:
            if f[0] == "cut":
                physionet.faults.cut(rel, int(f[1] * size))
            elif f[0] == "status":
                physionet.faults.status(rel, f[1], times=f[2], retry_after=0)
            elif f[0] == "corrupt":
                physionet.faults.corrupt(rel, min(size - 1, int(f[1] * size)), times=f[2])
            else:
                physionet.faults.missing.add(rel)
    creds = Credentials(USER, PASSWORD)
    with tempfile.TemporaryDirectory() as tmp:
        dest = Path(tmp) / "d"
        error = None
        try:
            download(CRED_SLUG, CRED_VERSION, mirror=physionet.url, dest=dest, jobs=jobs, progress=False,
                     retry=RETRY, credentials_=creds)
        except MimiclabError as exc:
            error = exc
        present = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()} if dest.exists() else set()
        finals = present & set(sums)
        for rel in finals:  # never a wrong file at a final path
            assert (dest / rel).read_bytes() == (src / rel).read_bytes(), rel
        others = present - set(sums) - {"SHA256SUMS.txt", STATE}
        assert all(p.endswith(".part") and p[: -len(".part")] in sums for p in others), others
        if error is None:
            assert finals == set(sums) and not others
        else:
            failed = getattr(error, "failures", {})
            assert failed, error
            assert set(failed) <= set(plan) | set(sums) and all(p in str(error) for p in failed)
            assert set(failed).isdisjoint(finals)
            assert all(rel in plan or random_cut for rel in failed)  # only files that met faults fail
        # whatever happened, a clean re-run resumes to a complete, verified copy
        physionet.faults.clear()
        res = download(CRED_SLUG, CRED_VERSION, mirror=physionet.url, dest=dest, jobs=jobs, progress=False,
                       retry=RETRY, credentials_=creds)
        assert set(res.fetched) | set(res.skipped) == set(sums)
        for rel in sums:
            assert (dest / rel).read_bytes() == (src / rel).read_bytes(), rel
        assert not list(dest.rglob("*.part"))
