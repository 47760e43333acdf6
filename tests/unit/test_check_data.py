"""limits.check_data's fast path (no path strings built while nothing is wrong) finds a problem exactly
when the full walk does, and the message is the walk's: the first problem, named by its place."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from workflow.limits import _check_data_walk, _data_ok, check_data

TEXT = st.one_of(st.text(max_size=12), st.sampled_from(["正常文字", "a\nb", "a\r\nb", "坏\x00字", "\u2028", "\u202e反向",
                                                        "x" * 4001, ""]))
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**40, max_value=2**40),
                    st.floats(allow_nan=True, allow_infinity=True), TEXT)
DATA = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.dictionaries(TEXT, inner, max_size=4)), max_leaves=20)


@settings(max_examples=500, deadline=None)
@given(DATA)
def test_the_fast_path_agrees_with_the_walk(data: Any) -> None:
    walked = _check_data_walk(data, "填报数据", 0)
    assert _data_ok(data, 0) is (walked is None)
    assert check_data(data, "填报数据") == walked


def test_what_a_user_sees_for_each_kind_of_problem() -> None:
    assert check_data({"scores": {"1": 4.0}, "note": "第一行\n第二行"}) is None
    assert check_data({"a": [{"b": "坏\x00字"}]}, "填报数据") == "填报数据.a[0].b含有不允许的空字符（NUL）"
    assert check_data({"x\ny": 1}, "填报数据") == "填报数据 的字段名含有不允许的换行符"
    assert check_data({"n": 2**40}, "填报数据") == "填报数据.n须在 -2147483648–2147483647 之间"
    assert check_data({"f": math.inf}, "填报数据") == "填报数据.f 须为有限的数字"
    deep: Any = "x"
    for _ in range(18):
        deep = [deep]
    assert check_data(deep, "填报数据") is not None and "嵌套层数过多" in str(check_data(deep, "填报数据"))
