"""MIMICDataset against the datathon's example class, re-implemented here as the oracle (pandas.read_csv of
each file + np.where per patient), on the real demos."""

from __future__ import annotations

import os
import shutil
from typing import NamedTuple

import numpy as np
import pandas as pd
import pytest

from mimiclab.api import MIMICDataset, MissingFileError, PatientSample, UnknownNameError
from mimiclab.errors import MimiclabError, NotBuiltError

# the API fetches point lookups with execute() + Arrow on purpose (see Dataset.fetch)
pytestmark = pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result")

FILES = ["hosp/admissions", "hosp/prescriptions", "hosp/procedures_icd"]


class _Sample(NamedTuple):
    subject_id: int
    data: dict


class ExampleDataset:
    """The datathon's example class, as published (reading everything with pandas)."""

    def __init__(self, datapath, files, ext=".csv.gz"):
        self.data = {f: pd.read_csv(os.path.join(datapath, f + ext)) for f in files}
        # not part of the example: the same files read as text, to compare codes such as NDCs with leading zeros
        self.text = {f: pd.read_csv(os.path.join(datapath, f + ext), dtype=str) for f in files}
        self._subject_ids = sorted(set.intersection(*[set(m.subject_id) for m in self.data.values()]))

    def __len__(self):
        return len(self._subject_ids)

    def __getitem__(self, idx):
        sid = self._subject_ids[idx]
        return _Sample(sid, {k: m.iloc[np.where(m.subject_id == sid)[0]] for k, m in self.data.items()})

    def text_rows(self, idx, key):
        return self.text[key].loc[self[idx].data[key].index]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    h = tmp_path_factory.mktemp("seed-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MIMICLAB_HOME", str(h))
        yield h


@pytest.fixture(scope="module")
def seed(home, demo_dir):
    return MIMICDataset(demo_dir, files=FILES)


@pytest.fixture(scope="module")
def example(demo_dir):
    return ExampleDataset(demo_dir, FILES)


def assert_same_frame(ours: pd.DataFrame, theirs: pd.DataFrame, theirs_text: pd.DataFrame | None = None) -> None:
    """Same index (row positions in the file), columns and values; ours is typed, theirs is read_csv's guess
    (text columns are compared with the file read as text, when given)."""
    assert list(ours.columns) == list(theirs.columns)
    assert list(ours.index) == list(theirs.index)
    for c in theirs.columns:
        a, b = ours[c], theirs[c]
        if pd.api.types.is_datetime64_any_dtype(a):
            b = pd.to_datetime(b)
            assert a.isna().tolist() == b.isna().tolist(), c
            assert (a[a.notna()] == b[b.notna()]).all(), c
        elif pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b):
            np.testing.assert_array_equal(a.to_numpy(dtype=float), b.to_numpy(dtype=float), err_msg=c)
        else:  # text: compare as text; read_csv may have parsed numbers-looking codes as numbers
            if theirs_text is not None:
                b = theirs_text[c]
            sa = a.astype("object").where(a.notna(), None)
            sb = b.astype("object").where(b.notna(), None)
            norm = [None if v is None else (str(int(v)) if isinstance(v, float) and v.is_integer() else str(v))
                    for v in sb]
            assert [None if v is None else str(v) for v in sa] == norm, c


def test_len_and_order_match_the_example(seed, example):
    assert len(seed) == len(example) > 0
    assert seed._subject_ids == [int(s) for s in example._subject_ids]


@pytest.mark.parametrize("idx", [0, 1, 17, -1, -5])
def test_items_match_the_example(seed, example, idx):
    ours, theirs = seed[idx], example[idx]
    assert isinstance(ours, PatientSample)
    assert ours.subject_id == theirs.subject_id
    assert list(ours.data) == FILES
    for key in FILES:
        assert_same_frame(ours.data[key], theirs.data[key], example.text_rows(idx, key))


def test_index_errors_behave_like_a_list(seed):
    n = len(seed)
    assert seed[-n].subject_id == seed[0].subject_id
    with pytest.raises(IndexError):
        seed[n]
    with pytest.raises(IndexError):
        seed[-n - 1]
    with pytest.raises(TypeError):
        seed["10000032"]
    assert [s.subject_id for s in seed[1:3]] == seed._subject_ids[1:3]
    assert seed[np.int64(2)].subject_id == seed._subject_ids[2]


def test_repr_lists_tables_rows_features_and_dtypes(seed, example):
    text = repr(seed)
    assert not text.endswith("\n")
    blocks = text.split("\n")
    for key, m in example.data.items():
        header = f"{key}: MIMIC Dataset with {m.shape[0]} entries and {m.shape[1]} features."
        i = blocks.index(header)
        assert blocks[i + 1] == "Features:"
        cols = blocks[i + 2: i + 2 + m.shape[1]]
        assert [c.split("`")[1] for c in cols] == list(m.columns)
        one = seed[0].data[key]
        for line, col in zip(cols, m.columns, strict=True):
            assert line == f"  `{col}` with {one[col].dtype} datatype"
            # where read_csv and the catalog agree a column is numeric, int-vs-float follows read_csv
            if pd.api.types.is_numeric_dtype(one[col]) and pd.api.types.is_numeric_dtype(m[col]):
                assert one[col].dtype == m[col].dtype, col


def test_files_as_string_with_suffix_and_lazy_data(home, demo_dir):
    ds = MIMICDataset(demo_dir, files="hosp/admissions.csv.gz")
    raw = pd.read_csv(demo_dir / "hosp/admissions.csv.gz")
    assert len(ds) == raw.subject_id.nunique()
    assert list(ds[0].data) == ["hosp/admissions"]
    whole = ds.data["hosp/admissions"]  # loads on demand, like the example's attribute
    assert whole.shape == raw.shape
    with pytest.raises(KeyError):
        ds.data["hosp/nope"]


def test_plot_distribution_saves_the_examples_histogram(seed, example, tmp_path):
    out = tmp_path / "doses.png"
    fig = seed.plot_distribution("hosp/prescriptions", "doses_per_24_hrs", savepath=out, return_fig=True)
    assert out.stat().st_size > 1000
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    col = example.data["hosp/prescriptions"]["doses_per_24_hrs"].dropna()
    counts, _ = np.histogram(col, bins=100)
    assert heights == counts.tolist()
    assert ax.get_xlabel() == "Doses_Per_24_Hrs" and ax.get_ylabel() == "Number of Patients"


def test_plot_distribution_of_text_has_one_bar_per_value(seed, example, tmp_path):
    fig = seed.plot_distribution("hosp/admissions", "admission_type", savepath=tmp_path / "t.png", return_fig=True)
    counts = example.data["hosp/admissions"]["admission_type"].value_counts()
    bars = fig.axes[0].patches
    assert len(bars) == len(counts)
    assert sorted(int(b.get_height()) for b in bars) == sorted(counts.tolist())


def test_plot_distribution_draws_like_the_datathon_class_and_returns_nothing(seed, example, tmp_path):
    """The datathon class: plt.figure(figsize=(10, 6)), plt.xticks(rotation=45), shown, nothing returned
    (a returned Figure is drawn a second time by Jupyter)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    assert seed.plot_distribution("hosp/admissions", "race", savepath=tmp_path / "race.png") is None
    assert seed.plot_distribution("hosp/admissions", "race") is None
    assert plt.get_fignums() == before  # a non-interactive backend: shown figures are closed, none pile up
    assert (tmp_path / "race.png").stat().st_size > 1000
    fig = seed.plot_distribution("hosp/admissions", "race", return_fig=True)
    try:
        assert tuple(fig.get_size_inches()) == (10, 6)
        labels = fig.axes[0].get_xticklabels()
        races = example.data["hosp/admissions"]["race"].value_counts()
        assert sorted(t.get_text() for t in labels) == sorted(races.index)
        assert {t.get_rotation() for t in labels} == {45}
        assert sorted(int(b.get_height()) for b in fig.axes[0].patches) == sorted(races.tolist())
        hist = seed.plot_distribution("hosp/prescriptions", "doses_per_24_hrs", return_fig=True)
        assert tuple(hist.get_size_inches()) == (10, 6)
        assert {t.get_rotation() for t in hist.axes[0].get_xticklabels()} == {45}
    finally:
        plt.close("all")


def test_unknown_column_and_key_suggest(seed):
    with pytest.raises(UnknownNameError, match="doses_per_24_hrs"):
        seed.plot_distribution("hosp/prescriptions", "doses_per_24hrs", savepath="x.png")
    with pytest.raises(KeyError, match="hosp/admissions"):
        seed.plot_distribution("hosp/admission", "race", savepath="x.png")


def test_built_dataset_by_name_and_not_built(home, demo_dir, seed):
    with pytest.raises(NotBuiltError, match="mimiclab build mimic-iv-demo"):
        MIMICDataset("mimic-iv-demo", files=FILES)
    from mimiclab.load import build

    build("mimic-iv-demo", source=demo_dir, tables=["hosp/admissions", "hosp/prescriptions", "hosp/procedures_icd"])
    by_name = MIMICDataset("mimic-iv-demo", files=FILES)
    assert by_name._subject_ids == seed._subject_ids
    assert_same_frame(by_name[3].data["hosp/prescriptions"], seed[3].data["hosp/prescriptions"])


def test_missing_and_unknown_files(home, demo_dir):
    with pytest.raises(MimiclabError, match="hosp/admissions"):
        MIMICDataset(demo_dir, files=["hosp/admisions"])
    with pytest.raises(FileNotFoundError):
        MIMICDataset(demo_dir, files=["icu/chartevents"])  # the demo copy here lacks this file
    with pytest.raises(MissingFileError):
        MIMICDataset(demo_dir / "nope" / "x", files=FILES)


def test_folder_is_rebuilt_only_when_its_files_change(home, demo_dir, tmp_path):
    src = tmp_path / "mimic-iv-demo" / "2.2"
    (src / "hosp").mkdir(parents=True)
    for f in ("hosp/admissions.csv.gz", "hosp/patients.csv.gz"):
        shutil.copy2(demo_dir / f, src / f)
    a = MIMICDataset(src, files=["hosp/admissions", "hosp/patients"])
    man = a.dataset.build.build_dir / "manifest.json"
    stamp = man.stat().st_mtime_ns
    b = MIMICDataset(src, files=["hosp/admissions", "hosp/patients"])
    assert man.stat().st_mtime_ns == stamp  # nothing changed: no build at all
    assert b._subject_ids == a._subject_ids
    n_before = len(a)
    # drop one patient's admissions: the next construction rebuilds and sees the change
    raw = pd.read_csv(src / "hosp/admissions.csv.gz")
    gone = int(raw.subject_id.iloc[0])
    raw[raw.subject_id != gone].to_csv(src / "hosp/admissions.csv.gz", index=False, compression="gzip")
    c = MIMICDataset(src, files=["hosp/admissions", "hosp/patients"])
    assert gone not in c._subject_ids and len(c) == n_before - 1
    assert len(a) == len(c)  # the first object follows the rebuild too


def test_mimic_iii_demo_matches_the_example(home, data_root):
    src = data_root / "mimiciii-demo" / "1.4"
    files = ["ADMISSIONS", "PRESCRIPTIONS.csv"]
    ours = MIMICDataset(src, files=files)
    theirs = ExampleDataset(src, ["ADMISSIONS", "PRESCRIPTIONS"], ext=".csv")
    assert list(ours[0].data) == ["ADMISSIONS", "PRESCRIPTIONS"]
    assert len(ours) == len(theirs) > 0
    for idx in (0, -1):
        for k_ours, k_theirs in (("ADMISSIONS", "ADMISSIONS"), ("PRESCRIPTIONS", "PRESCRIPTIONS")):
            assert_same_frame(ours[idx].data[k_ours], theirs[idx].data[k_theirs], theirs.text_rows(idx, k_theirs))


def test_a_registered_build_of_the_same_folder_is_reused(home, demo_dir):
    """`mimiclab demo` / `mimiclab build --source DIR` already built this folder: no second copy."""
    from mimiclab.load import build
    from mimiclab.sources.registry import find

    build("mimic-iv-demo", source=demo_dir, tables=["hosp/admissions", "hosp/patients"])
    ds = MIMICDataset(demo_dir, files=["hosp/admissions", "hosp/patients"])
    assert ds.dataset.build.build_dir == find("mimic-iv-demo").build_dir


def test_views_build_gives_the_same_samples_as_native(demo_dir, home, tmp_path):
    """`--storage views` reads the Parquet files (row order by file_row_number), native reads DuckDB tables
    (row order by rowid): both must give the example class's rows and index."""
    from mimiclab.load import build

    views = build("mimic-iv-demo", source=demo_dir, dest=tmp_path / "views", storage="views",
                  tables=["admissions", "prescriptions"])
    ex = ExampleDataset(demo_dir, ["hosp/admissions", "hosp/prescriptions"])
    ds = MIMICDataset(views.build_dir, files=["hosp/admissions", "hosp/prescriptions"])
    assert len(ds) == len(ex)
    for i in (0, len(ex) // 2, -1):
        for key in ("hosp/admissions", "hosp/prescriptions"):
            got, want = ds[i].data[key], ex[i].data[key]
            assert list(got.index) == list(want.index)
            assert list(got["hadm_id"]) == list(want["hadm_id"])


def test_text_read_csv_reads_as_nan_and_headers_as_spelled(home, demo_dir):
    """read_csv reads "N/A", "None", "NA", "null"... as NaN (the demo's labevents valueuom has "N/A",
    procedureevents "None") and keeps the header's spelling (procedureevents ends in ORIGINALAMOUNT)."""
    files = ["icu/procedureevents", "hosp/labevents"]
    ds = MIMICDataset(demo_dir, files=files)
    for f in files:
        theirs = pd.read_csv(demo_dir / f"{f}.csv.gz", dtype=str)
        ours = ds.data[f]
        assert list(ours.columns) == list(theirs.columns), f
        assert list(ours.index) == list(theirs.index)
        assert ours["valueuom"].isna().tolist() == theirs["valueuom"].isna().tolist(), f
        raw = pd.read_csv(demo_dir / f"{f}.csv.gz", dtype=str, keep_default_na=False)["valueuom"]
        assert (raw.isin(["N/A", "None"])).sum() > 100  # the case is there
    assert "ORIGINALAMOUNT" in ds[0].data["icu/procedureevents"].columns
    sid = int(pd.read_csv(demo_dir / "icu/procedureevents.csv.gz", dtype=str, keep_default_na=False)
              .query("valueuom == 'None'")["subject_id"].iloc[0])
    i = ds._subject_ids.index(sid)
    theirs = pd.read_csv(demo_dir / "icu/procedureevents.csv.gz")
    theirs = theirs[theirs.subject_id == sid]
    assert ds[i].data["icu/procedureevents"]["valueuom"].isna().tolist() == theirs["valueuom"].isna().tolist()


def test_a_misspelled_file_is_a_file_not_found_error(home, demo_dir):
    """read_csv (the datathon's class) raised FileNotFoundError; code catching it keeps working."""
    with pytest.raises(FileNotFoundError, match=r"hosp/admision.*Did you mean: hosp/admissions"):
        MIMICDataset(demo_dir, files=["hosp/admision"])


def test_header_spelling_outlives_the_raw_files(demo_dir, tmp_path, monkeypatch):
    """The build keeps the header's spelling in its manifest: once the raw folder is gone (moved, not
    mounted on the GPU box), the columns are still read_csv's (they fell back to the stored names)."""
    from mimiclab.load import build

    monkeypatch.setenv("MIMICLAB_HOME", str(tmp_path / "home"))
    raw = tmp_path / "raw"
    (raw / "icu").mkdir(parents=True)
    shutil.copy(demo_dir / "icu/procedureevents.csv.gz", raw / "icu/procedureevents.csv.gz")
    build("mimic-iv-demo", source=raw, tables=["icu/procedureevents"])
    want = list(pd.read_csv(raw / "icu/procedureevents.csv.gz", nrows=1).columns)
    assert list(MIMICDataset("mimic-iv-demo", files=["icu/procedureevents"])[0].data["icu/procedureevents"].columns) == want
    shutil.rmtree(raw)
    got = MIMICDataset("mimic-iv-demo", files=["icu/procedureevents"])
    assert list(got[0].data["icu/procedureevents"].columns) == want and "ORIGINALAMOUNT" in want
