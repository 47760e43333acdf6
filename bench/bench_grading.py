"""Grade N branches (default 100,000) with each preset's rules, pure: rubric sum, weights, veto rules, scale.

    python bench/bench_grading.py [--n 100000]

Prints grades/s per preset, and the ratio to a bare baseline in the same run (summing the same scores
and banding them with a hand-written if-chain): the price of explained, configurable grading.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workflow import grading
from workflow.campaign import load_preset, preset_names
from workflow.case import BranchFacts


def inputs(n: int, preset: str, rng: random.Random) -> list[tuple[BranchFacts, dict]]:  # type: ignore[type-arg]
    c = load_preset(preset)
    out = []
    for i in range(n):
        btype = "teacher" if i % 2 else "undergraduate"
        rubric = c.grading.rubric_for(btype)
        q = rng.uniform(0.4, 1.0)
        records = {
            "self_assessment": {"scores": {it.id: round(it.max * min(1.0, rng.gauss(q, 0.05)), 1) for it in rubric.items}},
            "member_evaluation": {"tally": {"ballots": 12, "rating": q * 100, "satisfaction_members": min(1, q + 0.1),
                                            "satisfaction_secretary": min(1, q + 0.05)},
                                  "peer": q * 95, "superior": q * 97},
            "survey": {},
        }
        facts = BranchFacts(code=f"B{i}", name=f"第{i}支部", branch_type=btype, member_count=15, committee_size=7,
                            last_reelection=dt.date(2024, 1, 1) if i % 50 else dt.date(2019, 1, 1),
                            last_activity=dt.date(2026, 3, 1), secretary_violation=(i % 997 == 0))
        out.append((facts, records))
    return out


def baseline(data: list[tuple[BranchFacts, dict]]) -> int:  # type: ignore[type-arg]
    advanced = 0
    for _, rec in data:
        total = sum(rec["self_assessment"]["scores"].values())
        grade = "A" if total > 85 else ("B" if total >= 65 else "C")
        advanced += grade == "A"
    return advanced


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    n = ap.parse_args().n
    rng = random.Random(7)
    as_of = dt.date(2026, 4, 20)
    ratios: dict[str, float] = {}
    for name in preset_names():
        c = load_preset(name)
        data = inputs(n, name, rng)
        t0 = time.perf_counter()
        counts: dict[str, int] = {}
        for facts, rec in data:
            g = grading.grade(c, facts, rec, as_of=as_of)["grade"]
            counts[g] = counts.get(g, 0) + 1
        elapsed = time.perf_counter() - t0
        t0 = time.perf_counter()
        baseline(data)
        base = time.perf_counter() - t0
        dist = ", ".join(f"{c.grading.scale.by_code(k).grade} {v:,}" for k, v in sorted(counts.items(), key=lambda kv: c.grading.scale.rank(kv[0])))
        print(f"{name}: {n:,} grades in {elapsed:.2f} s → {n / elapsed:,.0f} grades/s "
              f"(bare sum-and-band baseline {n / base:,.0f}/s, ratio {elapsed / base:.0f}×); {dist}")
        ratios[name] = round(elapsed / base, 1)
    print(json.dumps({"bench": "grading", "n": n, "ratio": max(ratios.values()), "per_preset": ratios}))


if __name__ == "__main__":
    main()
