"""Cohort spec YAML loading stays bounded: alias bombs and recursive anchors get a SpecError, fast."""

from __future__ import annotations

import time

import pytest

from mimiclab.cohort.spec import SpecError, loads


def _bomb(levels: int = 9, width: int = 9) -> str:
    lines = ["unit: patient", 'a0: &a0 ["lol"]']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    lines.append(f"include: [*a{levels}]")
    return "\n".join(lines) + "\n"


def test_billion_laughs_fails_fast_with_spec_error():
    t0 = time.perf_counter()
    with pytest.raises(SpecError) as ei:
        loads(_bomb(), "bomb.yaml")
    assert time.perf_counter() - t0 < 1.0
    msg = str(ei.value)
    assert "bomb.yaml" in msg and "alias" in msg.lower()


def test_recursive_anchor_is_refused():
    with pytest.raises(SpecError, match="alias"):
        loads("unit: patient\ninclude: &x [*x]\n", "loop.yaml")


def test_harmless_anchor_still_loads_with_lines():
    text = (
        "unit: admission\n"
        "include:\n"
        "  - &adult {type: age, min: 18}\n"
        "exclude:\n"
        "  - type: in_hospital_death\n"
        "extra_defaults: null\n"
    )
    # unknown field: line numbers still come from the tracked nodes
    with pytest.raises(SpecError, match="line 6"):
        loads(text, "s.yaml")
    spec = loads(text.replace("extra_defaults: null\n", "") + "name: anchors\n", "s.yaml")
    assert spec.include[0].min == 18 and spec.unit == "admission"
    text2 = "unit: patient\ninclude:\n  - &a {type: age, min: 18}\n  - *a\n"
    spec2 = loads(text2, "t.yaml")
    assert len(spec2.include) == 2 and spec2.include[1].min == 18


def test_deep_nesting_is_a_spec_error():
    with pytest.raises(SpecError, match="deep"):
        loads("unit: patient\nx: " + "[" * 5000 + "]" * 5000 + "\n", "deep.yaml")
