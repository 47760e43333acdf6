"""The sweep's event bodies are the hashed canonical bytes: notifications.outbox.event_body must write
exactly what workflow.audit.canonical writes, for any body (the flat ones it writes itself, the rest it
hands to canonical)."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from notifications.outbox import _flat_json, event_body
from workflow.audit import canonical

# every code point, lone surrogates, controls, quotes, backslashes and U+2028 included
ANY_TEXT = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()), max_size=30)
CHINESE = st.text(alphabet=st.sampled_from(list("督办令党支部“调查摸底”环节已逾期（截止）、，。\n\t\"\\/")), max_size=30)
TEXT = st.one_of(ANY_TEXT, CHINESE, st.sampled_from(["", "reminded", "survey", "before-7", "2026-03-31"]))
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=-2**70, max_value=2**70),
                    st.floats(allow_nan=True, allow_infinity=True), TEXT)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(TEXT, inner, max_size=4)), max_leaves=12)
FLAT = st.dictionaries(TEXT, st.one_of(st.none(), st.booleans(), st.integers(), TEXT, st.lists(TEXT, max_size=4)),
                       max_size=6)


def same(kind: Any, at: Any, actor: Any, stage: Any, payload: Any) -> None:
    try:
        want = canonical({"kind": kind, "at": at, "actor": actor, "stage": stage, "payload": payload})
    except (TypeError, ValueError) as exc:
        try:
            event_body(kind, at, actor, stage, payload)
        except type(exc):
            return
        raise AssertionError("canonical() refused this body, event_body did not") from exc
    assert event_body(kind, at, actor, stage, payload) == want


@settings(max_examples=400, deadline=None)
@given(TEXT, TEXT, TEXT, TEXT, FLAT)
def test_flat_payloads_are_the_canonical_bytes(kind: str, at: str, actor: str, stage: str, payload: dict[str, Any]) -> None:
    assert _flat_json(payload) is not None  # written directly, not handed to canonical()
    same(kind, at, actor, stage, payload)


@settings(max_examples=400, deadline=None)
@given(TEXT, TEXT, TEXT, TEXT, st.dictionaries(TEXT, VALUES, max_size=5))
def test_any_payload_is_the_canonical_bytes(kind: str, at: str, actor: str, stage: str, payload: dict[str, Any]) -> None:
    same(kind, at, actor, stage, payload)


@settings(max_examples=200, deadline=None)
@given(VALUES, VALUES)
def test_bodies_of_any_shape_are_the_canonical_bytes(kind: Any, payload: Any) -> None:
    same(kind, "2026-03-24T01:00:00.000000Z", "system", "survey", payload)


class Text(str):
    pass


def test_the_sweeps_own_bodies_and_the_odd_cases() -> None:
    key = "haitang-2026/B000001/survey/2026-03-31/before-7"
    at = "2026-03-24T01:00:00.000000Z"
    for payload in [
        {"rung": "before-7", "deadline": "2026-03-31", "to": ["g1@bench.cn", "张三@例子.中国"], "dedup_key": key},
        {"rung": "after-3", "deadline": "2026-03-31", "days_overdue": 3, "to": [], "dedup_key": key},
        {"deadline": "2026-03-31", "to": ["a@b.cn"], "dedup_key": key,
         "text": "督办令：党支部“第1党支部”“调查摸底”环节已逾期 3 天（截止 2026年3月31日），请党委组织部督促。"},
        {"score": 92.5, "ratio": 1e16, "tiny": 5e-324, "nan": math.nan, "inf": -math.inf},  # floats: canonical's own
        {"nested": {"b": 1, "a": [1, 2.0, {"z": None}]}, "flag": True, "none": None},
        {1: "int key"}, {"a": 1, 2: "mixed keys"}, {(1, 2): "tuple key"},
        {"sub": Text("a str subclass"), Text("k"): "subclass key", "list": [Text("x"), "y"]},
        {"t": ("a", "tuple"), "s": {"set"}},  # json.dumps refuses a set: so must event_body
        {"big": 2**80, "neg": -0, "bool_vs_int": [True, 1, False, 0]},
        {"\u2028": "\u2029", "\ud800": "lone surrogate \udfff", "\x00\x1f\x7f": "controls \x00\x1f\x7f"},
        {}, [], "not a dict", None,
    ]:
        same("reminded", at, "system", "survey", payload)
    same(Text("reminded"), at, "system", "survey", {"a": "b"})
    same("reminded", at, None, "survey", {"a": "b"})
    assert json.loads(event_body("reminded", at, "system", "调查摸底", {"to": ["甲"]})) == {
        "kind": "reminded", "at": at, "actor": "system", "stage": "调查摸底", "payload": {"to": ["甲"]}}
