"""The Merkle log over HTTP: checkpoints, an inclusion proof and a consistency proof that check out."""

from __future__ import annotations

import base64

from states.base import Stage
from tests.acceptance.conftest import Site
from tests.support.world import at
from workflow import checkpoint, merkle


def test_checkpoint_and_proofs_over_http(site: Site) -> None:
    world = site.world
    world.drive("B1", Stage.committee_grading)
    signer = checkpoint.generate("branchflow.local/audit")
    with world.sessions() as s, s.begin():
        old = checkpoint.make(s, signer, reason="test", now=at(4, 1))
    world.drive("B2", Stage.self_assessment)
    with world.sessions() as s, s.begin():
        checkpoint.make(s, signer, reason="test", now=at(4, 2))

    assert site.call("sec1", "GET", "/api/audit/checkpoint").status_code == 403
    r = site.call("auditor", "GET", "/api/audit/checkpoint")
    assert r.status_code == 200
    cp = checkpoint.parse_checkpoint(r.text, [signer.verifier])
    assert [c["size"] for c in site.call("auditor", "GET", "/api/audit/checkpoints").json()] == [cp.size, old.size]

    p = site.call("auditor", "GET", "/api/audit/proof/B1/3").json()
    assert p["tree_size"] == cp.size and p["entry"].endswith("B1 事件 #3")
    merkle.check_inclusion([base64.b64decode(h) for h in p["inclusion_proof"]], cp.size, cp.root, p["leaf_index"],
                           merkle.leaf_hash(p["leaf_data"].encode()))
    c = site.call("auditor", "GET", f"/api/audit/consistency?from={old.size}").json()
    merkle.check_consistency([base64.b64decode(h) for h in c["consistency_proof"]], cp.size, cp.root, old.size,
                             bytes.fromhex(old.root_hash))
    r = site.call("auditor", "GET", "/api/audit/proof/NOPE/1")
    assert r.status_code == 404 and "找不到" in r.json()["message"]
