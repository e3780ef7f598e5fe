"""The catalogue of misuse: each case gets a specific error type and message, and no
partial state is left behind where that means something: the user's model unchanged
(parameters, buffers, training flags, hooks), no compile-cache entry and no dump files
from a compile that failed, a damaged cache entry rebuilt rather than used.

Case                                       raises
-----------------------------------------  --------------------------------------------
unsupported ops (all at once, with lines)  UnsupportedOpError
data-dependent control flow                CaptureError (both fx's and export's reason)
call: input count, shape, dtype, device    InputMismatchError
unknown target name                        TargetError (suggests the close names)
missing nvcc / ROCm device libs / ld.lld   ToolchainError (names what to install)
malformed IR text                          IRParseError (line and column)
truncated or damaged IR file               IRParseError / IRFileError
truncated or garbage compile-cache entry   none: a warning, rebuilt, never used
truncated exported library                 LibraryError (not a SIGBUS)
model in training mode                     CaptureError (which modules, and why)
inputs that require grad                   InputMismatchError (at call, with grad on)
NaN and Inf inputs                         none: they propagate exactly as in eager
"""

import hashlib
import json
import logging
import os
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ir
from backends.tvm import op_table
from backends.tvm.build import BuiltModule
from backends.tvm.library import LibraryError, load_library
from compiler import (
    CaptureError,
    InputMismatchError,
    LoweringError,
    TargetError,
    ToolchainError,
    UnsupportedOpError,
    dscompile,
)
from examples.models import ZOO

RTOL, ATOL = 1e-4, 1e-5


# ----- no partial state -----------------------------------------------------------------


def snapshot(model: nn.Module) -> dict:
    """Everything of the user's model that compiling must not change."""
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "training": {n: m.training for n, m in model.named_modules()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "hooks": {n: (len(m._forward_hooks), len(m._forward_pre_hooks),
                      len(m._backward_hooks)) for n, m in model.named_modules()},
    }


def assert_unchanged(model: nn.Module, before: dict) -> None:
    after = snapshot(model)
    assert after["state"].keys() == before["state"].keys()
    assert all(torch.equal(after["state"][k], v) for k, v in before["state"].items())
    assert after["training"] == before["training"]
    assert after["requires_grad"] == before["requires_grad"]
    assert after["hooks"] == before["hooks"]


@pytest.fixture
def cache_root(tmp_path, monkeypatch) -> Path:
    """A compile cache of this test's own."""
    root = tmp_path / "cache"
    monkeypatch.setenv("DSCOMPILE_CACHE_DIR", str(root))
    monkeypatch.setenv("DSCOMPILE_CACHE", "1")
    return root


def cache_entries(root: Path) -> list[Path]:
    """Entries, ``<key[:2]>/<key>/`` (the ROCm toolchain keeps a link folder beside them)."""
    return [p for p in root.glob("*/*") if p.is_dir() and re.fullmatch(r"[0-9a-f]{64}", p.name)]


def leftovers(root: Path) -> list[Path]:
    """Temporary folders of entries being written."""
    return [p for p in root.glob("*/.*")]


# ----- unsupported ops, control flow -----------------------------------------------------


class UsesUnsupportedOps(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        a = torch.fft.fft(x).real  # unsupported
        b = torch.linalg.inv(x)  # unsupported
        return self.fc(a + b)


class DataDependent(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # a Python branch on a tensor's value
            return x * 2
        return x - 1


def test_unsupported_ops_are_listed_together_with_source_lines(cache_root, tmp_path):
    model = UsesUnsupportedOps().eval()
    before = snapshot(model)
    dumps = tmp_path / "dumps"
    with pytest.raises(UnsupportedOpError) as err:
        dscompile(model, (torch.randn(4, 4),), dump_dir=str(dumps))
    message = str(err.value)
    assert message.startswith("2 unsupported op(s):")
    assert "fft" in message and "inv" in message
    assert all("test_bad_inputs.py:" in (op.source or "") for op in err.value.ops)
    lines = sorted(int(op.source.split(":")[1].split()[0]) for op in err.value.ops)
    assert lines[1] == lines[0] + 1  # a's line, then b's
    assert_unchanged(model, before)
    assert not cache_entries(cache_root) and not dumps.exists()


def test_data_dependent_control_flow_says_why_and_what_to_try():
    model = DataDependent().eval()
    with pytest.raises(CaptureError) as err:
        dscompile(model, (torch.randn(4),))
    message = str(err.value)
    assert "could not capture the model with torch.fx or torch.export" in message
    assert "torch.fx.symbolic_trace:" in message and "torch.export.export:" in message
    assert "torch.cond" in message and "control flow" in message


# ----- call-time mismatches ---------------------------------------------------------------


@pytest.fixture(scope="module")
def compiled_mlp():
    model, (x,) = ZOO["mlp"]()
    return dscompile(model, (x,), check="off"), model, x


@pytest.mark.parametrize(("make_args", "message"), [
    (lambda x: (x, x), r"compiled for 1 tensor input\(s\) \(x: f32\[8,64\]\), called with 2"),
    (lambda x: (), r"compiled for 1 tensor input\(s\) .*called with 0"),
    (lambda x: (torch.randn(4, 64),), r"input 'x': compiled for shape \[8, 64\], got \[4, 64\]"),
    (lambda x: (x[None],), r"compiled for shape \[8, 64\], got \[1, 8, 64\]"),
    (lambda x: (x.double(),), r"input 'x': compiled for dtype float32, got float64"),
    (lambda x: (x.to("meta"),), r"compiled for device 'cpu', got a tensor on 'meta'"),
], ids=["too_many", "none", "shape", "rank", "dtype", "device"])
def test_call_time_mismatches_are_refused(compiled_mlp, make_args, message):
    compiled, model, x = compiled_mlp
    before = snapshot(model)
    with pytest.raises(InputMismatchError, match=message):
        compiled(*make_args(x))
    assert_unchanged(model, before)
    torch.testing.assert_close(compiled(x), model(x), rtol=RTOL, atol=ATOL)  # still fine


def test_requires_grad_is_refused_with_a_reason(compiled_mlp):
    compiled, model, x = compiled_mlp
    with pytest.raises(InputMismatchError, match="input 'x' requires grad, but dscompile "
                                                 "modules are inference-only"):
        compiled(x.clone().requires_grad_())
    with torch.no_grad():
        compiled(x.clone().requires_grad_())  # fine where no gradient is being recorded


def test_example_inputs_that_require_grad_compile_and_stay_untouched():
    model, (x,) = ZOO["mlp"]()
    x = x.clone().requires_grad_()
    for p in model.parameters():
        p.requires_grad_(True)
    before = snapshot(model)
    compiled = dscompile(model, (x,))
    assert x.grad is None and all(p.grad is None for p in model.parameters())
    assert_unchanged(model, before)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=RTOL, atol=ATOL)


# ----- targets and toolchains -------------------------------------------------------------


class CountsCalls(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x.relu()


@pytest.mark.parametrize(("name", "suggestion"), [("cdua", "'cuda'"), ("rcom", "'rocm'"),
                                                  ("cpuu", "'cpu'")])
def test_unknown_target_suggests_close_names_before_any_work(name, suggestion):
    model = CountsCalls().eval()
    with pytest.raises(TargetError, match=f"unknown target '{name}'; did you mean .*{suggestion}"):
        dscompile(model, (torch.randn(3),), target=name)
    assert model.calls == 0  # refused before capture ran the model


def test_a_malformed_target_dict_is_refused():
    with pytest.raises(TargetError, match="has no 'kind'"):
        dscompile(CountsCalls().eval(), (torch.randn(3),), target={"arch": "sm_90"})


@pytest.fixture
def no_gpu_toolchain(tmp_path, monkeypatch):
    """A machine without nvcc, ld.lld or the AMD device libraries: the search paths point
    at empty folders, and the fixed system locations (/usr/local/cuda, /usr/lib/llvm-N)
    are hidden by making their tools not executable."""
    empty = tmp_path / "empty"
    empty.mkdir()
    for var in ("PATH", "CUDA_HOME", "CUDA_PATH", "ROCM_PATH"):
        monkeypatch.setenv(var, str(empty))
    real_access = os.access

    def access(path, mode, *args, **kwargs):
        if Path(path).name.startswith(("nvcc", "ld.lld")):
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)
    return empty


def test_missing_nvcc_names_what_to_install(no_gpu_toolchain, cache_root):
    model, inputs = ZOO["mlp"]()
    with pytest.raises(ToolchainError) as err:
        dscompile(model, inputs, target="cuda")
    message = str(err.value)
    assert "target cuda needs nvcc" in message
    assert "cuda-nvcc" in message and "CUDA_PATH" in message
    assert not cache_entries(cache_root)


def test_missing_lld_for_rocm_names_the_package(no_gpu_toolchain, cache_root):
    model, inputs = ZOO["mlp"]()
    with pytest.raises(ToolchainError, match=r"target rocm needs ld.lld \d+ .*apt-get install "
                                             r"lld-\d+"):
        dscompile(model, inputs, target="rocm")
    assert not cache_entries(cache_root)


def test_missing_rocm_device_libs_name_the_package(no_gpu_toolchain, monkeypatch):
    from backends.tvm import toolchain

    monkeypatch.setattr(toolchain, "DEBIAN_BITCODE", str(no_gpu_toolchain))
    model, inputs = ZOO["mlp"]()
    with pytest.raises(ToolchainError, match=r"AMD device libraries .*apt-get install "
                                             r"rocm-device-libs"):
        dscompile(model, inputs, target="rocm")


# ----- IR text and files --------------------------------------------------------------


@pytest.mark.parametrize(("text", "where", "message"), [
    ("graph(%x : f32[2]) {\n  %y : f32[2] = relu(%z)\n  return (%y)\n}", (2, 22),
     "%z is used before it is defined"),
    ("graph(%x : f32[2,3]) {\n  %y : f32[2] = sum(%x, dims=[1], keepdim=maybe)\n"
     "  return (%y)\n}", (2, 43), "expected an attribute value, found 'maybe'"),
    ("graph(%x : f32[2) {\n  return (%x)\n}", (1, 17), "expected ','"),
    ("", (1, 1), "empty input"),
], ids=["undefined", "attribute", "type", "empty"])
def test_malformed_ir_text_names_line_and_column(tmp_path, text, where, message):
    path = tmp_path / "hand_edited.dsir"
    path.write_text(text)
    with pytest.raises(ir.IRParseError) as err:
        ir.load(path)
    assert (err.value.line, err.value.col) == where
    assert str(err.value).startswith(f"line {where[0]}, column {where[1]}: {message}")


@pytest.fixture(scope="module")
def saved_ir(tmp_path_factory):
    model, inputs = ZOO["mlp"]()
    graph = dscompile(model, inputs, check="off").ir
    folder = tmp_path_factory.mktemp("ir")
    ir.save(graph, folder / "model.json")
    ir.save(graph, folder / "model.dsir")
    return folder


def test_a_truncated_dsir_file_names_where_it_ends(saved_ir, tmp_path):
    text = (saved_ir / "model.dsir").read_text()
    cut = tmp_path / "cut.dsir"
    cut.write_text(text[: len(text) // 2])
    with pytest.raises(ir.IRParseError) as err:
        ir.load(cut)
    assert err.value.line == len(text[: len(text) // 2].splitlines())
    garbage = tmp_path / "garbage.dsir"
    garbage.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)))
    with pytest.raises(ir.IRFileError, match="not a text file"):
        ir.load(garbage)


@pytest.mark.parametrize(("damage", "message"), [
    (lambda t: t[:-100], "not valid JSON \\(truncated or corrupted\\?\\)"),
    (lambda t: t[: len(t) // 2], "truncated or corrupted"),
    (lambda t: json.dumps({"format": "something-else"}), "not a dscompile IR file"),
    (lambda t: json.dumps({**json.loads(t), "version": 99}), "IR file version 99"),
    (lambda t: json.dumps({**json.loads(t), "text": 7}), "'text' must be a string"),
    (lambda t: json.dumps({**json.loads(t), "weights": {
        k: v[: len(v) // 2] for k, v in json.loads(t)["weights"].items()}}), "is damaged"),
    (lambda t: json.dumps({**json.loads(t), "meta": {"nope": {}}}), "damaged meta of %nope"),
], ids=["tail", "half", "format", "version", "text", "weights", "meta"])
def test_a_damaged_json_ir_file_is_refused(saved_ir, tmp_path, damage, message):
    path = tmp_path / "damaged.json"
    path.write_text(damage((saved_ir / "model.json").read_text()))
    with pytest.raises(ir.IRFileError, match=message):
        ir.load(path)


def test_truncated_ir_text_inside_a_json_file_names_line_and_column(saved_ir, tmp_path):
    doc = json.loads((saved_ir / "model.json").read_text())
    doc["text"] = doc["text"][: len(doc["text"]) // 2]
    path = tmp_path / "cut_text.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ir.IRParseError, match=r"^line \d+, column \d+: "):
        ir.load(path)


# ----- compile cache and exported libraries ------------------------------------------------


def _entry(root: Path) -> Path:
    entries = cache_entries(root)
    assert len(entries) == 1, entries
    return entries[0]


def _reseal(entry: Path) -> None:
    """Make meta.json's checksum match the (damaged) library, so the loader itself is
    what has to notice."""
    meta = json.loads((entry / "meta.json").read_text())
    meta["library_sha256"] = hashlib.sha256((entry / "program.so").read_bytes()).hexdigest()
    (entry / "meta.json").write_text(json.dumps(meta))


def _truncate_library(entry: Path) -> None:
    data = (entry / "program.so").read_bytes()
    (entry / "program.so").write_bytes(data[: len(data) // 2])


CACHE_DAMAGE = {
    "library_truncated": (_truncate_library, "checksum does not match"),
    "library_truncated_resealed": (lambda e: (_truncate_library(e), _reseal(e)), "truncated"),
    "library_garbage_resealed": (lambda e: ((e / "program.so").write_bytes(b"\0" * 4096),
                                            _reseal(e)), "not an ELF64 shared library"),
    "library_missing": (lambda e: (e / "program.so").unlink(), "missing"),
    "meta_garbage": (lambda e: (e / "meta.json").write_text("{not json"), "unreadable"),
    "meta_missing": (lambda e: (e / "meta.json").unlink(), "unreadable meta.json"),
    "meta_other_key": (lambda e: (e / "meta.json").write_text(json.dumps(
        {**json.loads((e / "meta.json").read_text()), "key": "0" * 64})), "another key"),
}


@pytest.mark.parametrize("damage", sorted(CACHE_DAMAGE))
def test_a_damaged_cache_entry_is_rebuilt_never_used(cache_root, caplog, damage):
    corrupt, reason = CACHE_DAMAGE[damage]
    model, (x,) = ZOO["mlp"]()
    first = dscompile(model, (x,), check="off")
    assert first._program.cache_status == "miss"
    corrupt(_entry(cache_root))
    with caplog.at_level(logging.WARNING, logger="compiler.cache"):
        again = dscompile(model, (x,), check="off")
    assert again._program.cache_status == "rebuilt"
    assert any("rejected" in r.message and reason in r.message for r in caplog.records), \
        [r.message for r in caplog.records]
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x), rtol=RTOL, atol=ATOL)
    assert dscompile(model, (x,), check="off")._program.cache_status == "hit"  # overwritten
    assert not leftovers(cache_root)


def test_a_failing_compile_leaves_no_cache_entry(cache_root, monkeypatch):
    monkeypatch.delitem(op_table.OP_TABLE, "relu")
    model, inputs = ZOO["mlp"]()
    before = snapshot(model)
    with pytest.raises(LoweringError, match=r"op\(s\) have no TVM lowering:\n  %relu \(relu\)"):
        dscompile(model, inputs)
    assert not cache_entries(cache_root) and not leftovers(cache_root)
    assert_unchanged(model, before)


def test_a_cache_write_that_fails_half_way_leaves_nothing(cache_root, monkeypatch, caplog):
    def half_written(self, path):
        Path(path).write_bytes(b"\x7fELF")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(BuiltModule, "save_library", half_written)
    model, (x,) = ZOO["mlp"]()
    with caplog.at_level(logging.WARNING, logger="compiler.cache"):
        compiled = dscompile(model, (x,), check="off")  # the compile itself succeeds
    assert any("could not store entry" in r.message for r in caplog.records)
    assert not cache_entries(cache_root) and not leftovers(cache_root)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=RTOL, atol=ATOL)


def test_a_truncated_exported_library_is_refused_not_a_crash(compiled_mlp, tmp_path):
    compiled, _, _ = compiled_mlp
    whole = tmp_path / "model.so"
    compiled._program.save_library(str(whole))
    load_library(whole)  # the whole one loads
    data = whole.read_bytes()
    for cut in (len(data) - 1, len(data) // 2, 40):
        (tmp_path / "cut.so").write_bytes(data[:cut])
        with pytest.raises(LibraryError, match="truncated|not an ELF64"):
            load_library(tmp_path / "cut.so")


# ----- training mode -------------------------------------------------------------------


class WithDropout(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.drop = nn.Dropout(0.25)

    def forward(self, x):
        return self.drop(self.fc(x))


def test_training_mode_is_refused_naming_each_module_and_why():
    model, inputs = ZOO["resnet_block"]()
    model.train()
    before = snapshot(model)
    with pytest.raises(CaptureError) as err:
        dscompile(model, inputs)
    message = str(err.value)
    assert message.startswith(f"{type(model).__name__} is in training mode: call "
                              f"model.eval() before compiling")
    assert "does not compile training semantics" in message
    bns = [n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(f"{n} (BatchNorm2d) would normalize with each batch's statistics"
                       in message for n in bns)
    assert_unchanged(model, before)


def test_dropout_in_training_mode_is_named():
    model = WithDropout().train()
    with pytest.raises(CaptureError, match=r"drop \(Dropout\) would zero random elements "
                                           r"\(p=0.25\)"):
        dscompile(model, (torch.randn(2, 8),))
    assert model.training and model.drop.training


def test_one_batch_norm_left_in_training_mode_is_found():
    model, inputs = ZOO["resnet_block"]()
    name, bn = next((n, m) for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d))
    bn.train()
    with pytest.raises(CaptureError, match=rf"1 submodule\(s\) of .* are in training mode"
                                           rf"(.|\n)*{name} \(BatchNorm2d\)"):
        dscompile(model, inputs)
    assert bn.training and not model.training


def test_a_plain_submodule_left_in_training_mode_is_harmless():
    model = WithDropout().eval()
    model.fc.train()  # a Linear behaves the same in both modes
    x = torch.randn(2, 8)
    with torch.no_grad():
        torch.testing.assert_close(dscompile(model, (x,))(x), model(x), rtol=RTOL, atol=ATOL)


# ----- NaN and Inf ---------------------------------------------------------------------


def _planted(x: torch.Tensor) -> torch.Tensor:
    bad = x.clone().flatten()
    n = bad.numel()
    bad[0] = float("nan")
    bad[n // 3] = float("inf")
    bad[n // 2] = float("-inf")
    bad[n - 1] = float("nan")
    return bad.view_as(x)


@pytest.mark.parametrize("name", ["mlp", "resnet_block", "transformer_block"])
def test_nan_and_inf_propagate_exactly_as_in_eager(name):
    model, (x,) = ZOO[name]()
    bad = _planted(x)
    compiled = dscompile(model, (bad,))  # the guard compares NaN/Inf positions too
    with torch.no_grad():
        expected = model(bad)
    out = compiled(bad)
    assert torch.isnan(expected).any()
    assert torch.equal(torch.isnan(out), torch.isnan(expected))
    assert torch.equal(torch.isinf(out), torch.isinf(expected))
    assert torch.equal(out[torch.isinf(out)], expected[torch.isinf(expected)])
    torch.testing.assert_close(out, expected, rtol=RTOL, atol=ATOL, equal_nan=True)


class FoldsAndReductions(nn.Module):
    """What TVM's expression folding and max reductions used to get wrong for NaN/Inf:
    x * 0, 0 * x, x / 0, x / -0.0 (CSE merged it with x / 0.0), 0 / x, x - x and
    (x + y) - x (simplified as if exact: inf - inf is NaN); amax/amin and max_pool2d
    dropped NaN."""

    def forward(self, x):
        img = x.reshape(1, 2, 4, 4)
        return (x * 0, 0 * x, x / 0.0, x / -0.0, 0 / x, x - x, (x + x.tanh()) - x,
                x.amax(-1), x.amin(0), F.max_pool2d(img, 2), (x - float("inf")).amax(-1))


@pytest.mark.parametrize("opt_level", [0, 2])
def test_nan_and_inf_through_folded_ops_and_max_reductions(opt_level):
    x = torch.randn(4, 8)
    x[0, 0], x[1, 3], x[2, 5], x[3, 7] = float("nan"), float("inf"), float("-inf"), 0.0
    compiled = dscompile(FoldsAndReductions().eval(), (x,), opt_level=opt_level)
    with torch.no_grad():
        expected = FoldsAndReductions()(x)
    for i, (out, ref) in enumerate(zip(compiled(x), expected)):
        assert torch.equal(torch.isnan(out), torch.isnan(ref)), i
        assert torch.equal(torch.isinf(out), torch.isinf(ref)), i
        assert torch.equal(out[torch.isinf(out)], ref[torch.isinf(ref)]), i
        torch.testing.assert_close(out, ref, rtol=RTOL, atol=ATOL, equal_nan=True)
