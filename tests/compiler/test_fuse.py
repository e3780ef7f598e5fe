"""Fusion-group formation: the groups chosen on typical blocks, and check_partition
rejecting hand-made groupings that break the contract of docs/architecture.md."""

import pytest

from compiler.passes.fuse import FuseOps
from compiler.passes.fusion import PartitionError, check_partition, groups
from compiler.passes.testing import assert_round_trips, graph_from_text, random_weights
from compiler.pipelines import optimize


def fused(text: str):
    graph = graph_from_text(text)
    result = FuseOps()(graph)
    assert result.modified
    assert_round_trips(result.graph)
    return {gid: [n.name for n in members] for gid, members in groups(result.graph).items()}


CONV_BN_RELU = """graph(%x : f32[1,3,8,8]) {
  %w : f32[4,3,3,3] = weight()
  %mean : f32[4] = weight()
  %var : f32[4] = weight()
  %conv : f32[1,4,8,8] = conv2d(%x, %w, padding=[1,1])
  %bn : f32[1,4,8,8] = batch_norm(%conv, %mean, %var)
  %relu : f32[1,4,8,8] = relu(%bn)
  %pool : f32[1,4,4,4] = max_pool2d(%relu, kernel=[2,2], stride=[2,2], padding=[0,0])
  %flat : f32[1,64] = reshape(%pool, shape=[1,64])
  return (%flat)
}"""


def test_conv_bn_relu():
    # The pool is a reduction of its own; its reshape joins it as an injective epilogue.
    assert fused(CONV_BN_RELU) == {0: ["conv", "bn", "relu"], 1: ["pool", "flat"]}


RESIDUAL = """graph(%x : f32[1,4,8,8]) {
  %w1 : f32[4,4,3,3] = weight()
  %b1 : f32[4] = weight()
  %w2 : f32[4,4,3,3] = weight()
  %b2 : f32[4] = weight()
  %c1 : f32[1,4,8,8] = conv2d(%x, %w1, %b1, padding=[1,1])
  %r1 : f32[1,4,8,8] = relu(%c1)
  %c2 : f32[1,4,8,8] = conv2d(%r1, %w2, %b2, padding=[1,1])
  %add : f32[1,4,8,8] = add(%c2, %x)
  %r2 : f32[1,4,8,8] = relu(%add)
  %shortcut : f32[1,4,8,8] = sigmoid(%x)
  %out : f32[1,4,8,8] = mul(%r2, %shortcut)
  return (%out)
}"""


def test_residual_block():
    # conv + add(residual from outside) + relu + mul(outside operand) is one epilogue;
    # the standalone sigmoid is a group of its own.
    assert fused(RESIDUAL) == {0: ["c1", "r1"], 1: ["c2", "add", "r2", "out"],
                               2: ["shortcut"]}


def test_a_value_used_twice_ends_its_group():
    text = RESIDUAL.replace("return (%out)", "return (%out, %add)")
    assert fused(text)[1] == ["c2", "add"]


TRANSFORMER = """graph(%x : f32[2,8,16]) {
  %ln1_w : f32[16] = weight()
  %ln1_b : f32[16] = weight()
  %ln1 : f32[2,8,16] = layer_norm(%x, %ln1_w, %ln1_b, normalized_ndim=1)
  %wq : f32[16,16] = weight()
  %wk : f32[16,16] = weight()
  %wv : f32[16,16] = weight()
  %q : f32[2,8,16] = linear(%ln1, %wq)
  %k : f32[2,8,16] = linear(%ln1, %wk)
  %v : f32[2,8,16] = linear(%ln1, %wv)
  %qh : f32[2,8,2,8] = reshape(%q, shape=[2,8,2,8])
  %qp : f32[2,2,8,8] = permute(%qh, dims=[0,2,1,3])
  %kh : f32[2,8,2,8] = reshape(%k, shape=[2,8,2,8])
  %kp : f32[2,2,8,8] = permute(%kh, dims=[0,2,3,1])
  %vh : f32[2,8,2,8] = reshape(%v, shape=[2,8,2,8])
  %vp : f32[2,2,8,8] = permute(%vh, dims=[0,2,1,3])
  %scores : f32[2,2,8,8] = matmul(%qp, %kp)
  %scale : f32[] = constant(value=0.35355339059327373)
  %scaled : f32[2,2,8,8] = mul(%scores, %scale)
  %attn : f32[2,2,8,8] = softmax(%scaled, dim=-1)
  %ctx : f32[2,2,8,8] = matmul(%attn, %vp)
  %ctxp : f32[2,8,2,8] = permute(%ctx, dims=[0,2,1,3])
  %ctxr : f32[2,8,16] = reshape(%ctxp, shape=[2,8,16])
  %wo : f32[16,16] = weight()
  %bo : f32[16] = weight()
  %proj : f32[2,8,16] = linear(%ctxr, %wo, %bo)
  %res1 : f32[2,8,16] = add(%x, %proj)
  %ln2_w : f32[16] = weight()
  %ln2_b : f32[16] = weight()
  %ln2 : f32[2,8,16] = layer_norm(%res1, %ln2_w, %ln2_b, normalized_ndim=1)
  %w1 : f32[32,16] = weight()
  %b1 : f32[32] = weight()
  %fc1 : f32[2,8,32] = linear(%ln2, %w1, %b1)
  %act : f32[2,8,32] = gelu(%fc1)
  %w2 : f32[16,32] = weight()
  %b2 : f32[16] = weight()
  %fc2 : f32[2,8,16] = linear(%act, %w2, %b2)
  %res2 : f32[2,8,16] = add(%res1, %fc2)
  return (%res2)
}"""


def test_transformer_block():
    assert fused(TRANSFORMER) == {
        0: ["ln1"], 1: ["q", "qh", "qp"], 2: ["k", "kh", "kp"], 3: ["v", "vh", "vp"],
        4: ["scores", "scaled"], 5: ["attn"], 6: ["ctx", "ctxp", "ctxr"],
        7: ["proj", "res1"], 8: ["ln2"], 9: ["fc1", "act"], 10: ["fc2", "res2"]}


def test_transformer_block_at_o2():
    graph = graph_from_text(TRANSFORMER)
    random_weights(graph)
    out, _ = optimize(graph, opt_level=2, verify=True)
    ops = {gid: [n.op for n in members] for gid, members in groups(out).items()}
    assert ["linear"] in ops.values()  # Q, K and V are one GEMM now
    assert ["linear", "gelu"] in ops.values() and ["linear", "add"] in ops.values()
    check_partition(out)


def test_refusing_is_idempotent_and_clears_old_groups():
    graph = graph_from_text(RESIDUAL)
    graph.node("shortcut").meta["group"] = 99
    once = FuseOps()(graph).graph
    assert not FuseOps()(once).modified
    assert 99 not in groups(once)


# ----- check_partition on hand-made groupings ---------------------------------------------


def with_groups(text: str, assignment: dict[str, int]):
    graph = graph_from_text(text)
    for name, gid in assignment.items():
        graph.node(name).meta["group"] = gid
    return graph


def test_check_partition_accepts_the_pass_result():
    check_partition(with_groups(RESIDUAL, {"c2": 0, "add": 0, "r2": 0}))


@pytest.mark.parametrize("assignment, message", [
    ({"c1": 0, "r1": 0, "c2": 0}, "more than one anchor"),
    ({"r1": 0, "c2": 0}, "is not its first member"),
    ({"c2": 0, "add": 0, "r2": 0, "out": 0, "shortcut": 0}, "no epilogue"),
    ({"c1": 0, "r1": 0}, None),
    ({"c2": 0, "add": 0}, None),
])
def test_check_partition_on_residual_groupings(assignment, message):
    graph = with_groups(RESIDUAL, assignment)
    if message is None:
        check_partition(graph)
        return
    with pytest.raises(PartitionError, match=message):
        check_partition(graph)


def test_check_partition_rejects_two_escaping_values():
    graph = with_groups(RESIDUAL.replace("return (%out)", "return (%out, %add)"),
                        {"c2": 0, "add": 0, "r2": 0})
    with pytest.raises(PartitionError, match="2 values escape"):
        check_partition(graph)


def test_check_partition_rejects_a_non_convex_group():
    # sigmoid(x) -> [outside: relu] -> mul: the path leaves the group and comes back.
    text = """graph(%x : f32[4]) {
  %s : f32[4] = sigmoid(%x)
  %r : f32[4] = relu(%s)
  %m : f32[4] = mul(%s, %r)
  return (%m)
}"""
    with pytest.raises(PartitionError, match="not convex"):
        check_partition(with_groups(text, {"s": 0, "m": 0}))


def test_check_partition_rejects_leaves_and_opaque_ops():
    text = """graph(%x : f32[4,8], %i : i64[3]) {
  %table : f32[10,8] = weight()
  %e : f32[3,8] = embedding(%table, %i)
  %r : f32[3,8] = relu(%e)
  return (%r, %x)
}"""
    with pytest.raises(PartitionError, match="cannot belong to a group"):
        check_partition(with_groups(text, {"table": 0}))
    with pytest.raises(PartitionError, match="opaque"):
        check_partition(with_groups(text, {"e": 0, "r": 0}))


TRANSCENDENTAL_CHAIN = """graph(%x : f32[1,8]) {
  %s : f32[1,8] = sigmoid(%x)
  %e : f32[1,8] = exp(%s)
  %g : f32[1,8] = gelu(%e)
  %r : f32[1,8] = relu(%g)
  return (%r)
}"""


def test_a_chain_whose_inlined_expression_would_explode_is_split():
    # sigmoid, then exp inlined into it: 29 copies of sigmoid's expression; gelu on
    # that would make 29 x 24, then relu twice that: gelu starts a kernel of its own.
    assert fused(TRANSCENDENTAL_CHAIN) == {0: ["s", "e"], 1: ["g", "r"]}


TF_PADDED = """graph(%x : f32[1,8,16,16]) {
  %w1 : f32[16,8,1,1] = weight()
  %w2 : f32[16,1,3,3] = weight()
  %w3 : f32[16,1,3,3] = weight()
  %c1 : f32[1,16,16,16] = conv2d(%x, %w1)
  %r1 : f32[1,16,16,16] = clamp(%c1, min=0.0, max=6.0)
  %p1 : f32[1,16,17,17] = pad(%r1, pads=[0,1,0,1])
  %dw : f32[1,16,8,8] = conv2d(%p1, %w2, stride=[2,2], groups=16)
  %r2 : f32[1,16,8,8] = clamp(%dw, min=0.0, max=6.0)
  %p2 : f32[1,16,10,10] = pad(%r2, pads=[1,1,1,1])
  %sig : f32[1,16,10,10] = sigmoid(%p2)
  %dw2 : f32[1,16,8,8] = conv2d(%p2, %w3, groups=16)
  %out : f32[1,16,8,8] = add(%dw2, %r2)
  return (%out, %sig)
}"""


def test_a_pad_read_only_by_a_conv_is_its_prologue():
    # MobileNetV2's TF-style padding: the pad joins the conv after it (which pads each
    # channel plane in cache), not the expansion conv before it (which then writes its
    # value unpadded). A pad with another user (the sigmoid) stays with its producer.
    assert fused(TF_PADDED) == {0: ["c1", "r1"], 1: ["p1", "dw", "r2"], 2: ["p2"],
                                3: ["sig"], 4: ["dw2", "out"]}


def test_check_partition_accepts_a_prologue_pad_only_before_its_conv():
    check_partition(with_groups(TF_PADDED, {"p1": 0, "dw": 0, "r2": 0}))
    with pytest.raises(PartitionError, match="not its first member"):
        check_partition(with_groups(TF_PADDED, {"r1": 0, "p1": 0, "dw": 0}))
