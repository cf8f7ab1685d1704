"""Unit tests for harness.fingerprint and harness.compat."""

from __future__ import annotations

import argparse
import math

import numpy
import pytest
import torch

from harness import compat
from harness.fingerprint import (
    collect_metadata,
    describe_tensor,
    fingerprint,
    flatten,
    hash_bytes,
    hash_tensor,
    sharing_groups,
    tensor_bytes,
)


def _flip_bit(tensor: torch.Tensor, index: int, bit: int) -> torch.Tensor:
    """A copy of a float32 tensor with one bit of one element flipped."""
    out = tensor.clone()
    as_int = out.view(torch.int32).reshape(-1)
    as_int[index] ^= (1 << bit) if bit < 31 else -(1 << 31)
    return out


class TiedNet(torch.nn.Module):
    """Two Linear layers sharing one weight Parameter (tied embeddings style)."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = torch.nn.Linear(4, 4, bias=False)
        self.decoder = torch.nn.Linear(4, 4, bias=True)
        self.decoder.weight = self.encoder.weight


# --------------------------------------------------------------------------------------------
# hash_tensor: bit-exact, NaN-aware
# --------------------------------------------------------------------------------------------


def test_hash_equal_for_nan_at_same_positions():
    a = torch.tensor([1.0, float("nan"), 3.0, float("nan")])
    b = torch.tensor([1.0, float("nan"), 3.0, float("nan")])
    assert not torch.equal(a, b)  # value equality fails on NaN; the hash must not
    assert hash_tensor(a) == hash_tensor(b)


def test_hash_differs_for_nan_at_other_positions():
    a = torch.tensor([1.0, float("nan"), 3.0])
    b = torch.tensor([float("nan"), 1.0, 3.0])
    assert hash_tensor(a) != hash_tensor(b)


def test_hash_differs_for_different_nan_payloads():
    a = torch.tensor([float("nan")])
    b = a.clone()
    b.view(torch.int32)[0] ^= 1  # still a NaN, but a different bit pattern
    assert math.isnan(b.item())
    assert hash_tensor(a) != hash_tensor(b)


@pytest.mark.parametrize("bit", [0, 1, 22, 23, 30, 31])
@pytest.mark.parametrize("index", [0, 57, 99])
def test_hash_changes_on_single_bit_flip(index, bit):
    base = torch.linspace(-3, 3, 100)
    flipped = _flip_bit(base, index, bit)
    assert (base.view(torch.int32) != flipped.view(torch.int32)).sum().item() == 1
    assert hash_tensor(base) != hash_tensor(flipped)
    assert hash_tensor(base) == hash_tensor(base.clone())


def test_hash_negative_zero_differs_from_zero():
    pos, neg = torch.tensor([0.0, 1.0]), torch.tensor([-0.0, 1.0])
    assert torch.equal(pos, neg)  # equal as values ...
    assert hash_tensor(pos) != hash_tensor(neg)  # ... but not bit-identical


DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int64, torch.int8, torch.uint8,
          torch.bool, torch.complex64]


def _sample(dtype: torch.dtype) -> torch.Tensor:
    if dtype == torch.bool:
        return torch.tensor([True, False, True, True, False, False])
    if dtype.is_complex:
        return torch.complex(torch.arange(6.0), -torch.arange(6.0)).to(dtype)
    return torch.arange(6).to(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_hash_per_dtype(dtype):
    t = _sample(dtype)
    assert len(tensor_bytes(t)) == t.numel() * t.element_size()
    assert hash_tensor(t) == hash_tensor(t.clone())
    changed = t.clone()
    if dtype == torch.bool:
        changed[2] = False
    else:
        changed[2] = changed[2] + 1
    assert hash_tensor(changed) != hash_tensor(t)


def test_hash_float16_and_bfloat16_distinguished_by_bits():
    # 1.0 has different bit patterns in the two half formats; the hash sees the bytes
    assert hash_tensor(torch.ones(4, dtype=torch.float16)) != hash_tensor(torch.ones(4, dtype=torch.bfloat16))


def test_hash_zero_size():
    for t in (torch.empty(0), torch.empty(0, 3, dtype=torch.int64), torch.zeros(2, 0, dtype=torch.bfloat16)):
        assert len(tensor_bytes(t)) == 0
        assert hash_tensor(t) == hash_bytes(b"")
    info = describe_tensor(torch.empty(0, 3))
    assert info["shape"] == [0, 3]
    assert info["nbytes"] == 0


def test_hash_zero_dim():
    s = torch.tensor(2.5)
    assert s.dim() == 0
    assert hash_tensor(s) == hash_tensor(torch.tensor([2.5]))
    assert hash_tensor(s) != hash_tensor(torch.tensor(2.25))
    assert describe_tensor(s)["shape"] == []
    assert describe_tensor(s)["stride"] == []


def test_hash_transposed_equals_contiguous():
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    t = base.t()
    assert not t.is_contiguous()
    assert hash_tensor(t) == hash_tensor(t.contiguous())
    # the hash covers logical (row-major) order, not the storage order
    assert hash_tensor(t) != hash_tensor(base)


def test_hash_sliced_view_covers_only_the_view():
    base = torch.arange(100, dtype=torch.float32)
    view = base[10:20]
    assert view.storage_offset() == 10
    assert hash_tensor(view) == hash_tensor(view.clone())
    assert hash_tensor(view) != hash_tensor(base)
    strided = base[::3]
    assert hash_tensor(strided) == hash_tensor(strided.contiguous())


def test_hash_channels_last():
    x = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    cl = x.to(memory_format=torch.channels_last)
    assert cl.is_contiguous(memory_format=torch.channels_last) and not cl.is_contiguous()
    assert hash_tensor(cl) == hash_tensor(cl.contiguous()) == hash_tensor(x)
    assert describe_tensor(cl)["stride"] == list(cl.stride()) == [60, 1, 15, 3]
    assert describe_tensor(x)["stride"] == [60, 20, 5, 1]


def test_hash_conjugate_view_is_resolved():
    c = torch.complex(torch.tensor([1.0, 2.0]), torch.tensor([3.0, -4.0]))
    conj = c.conj()
    assert conj.is_conj()
    assert hash_tensor(conj) == hash_tensor(conj.resolve_conj())
    assert hash_tensor(conj) != hash_tensor(c)


def test_hash_ignores_requires_grad_and_matches_numpy():
    p = torch.nn.Parameter(torch.arange(5.0))
    assert hash_tensor(p) == hash_tensor(torch.arange(5.0))
    arr = numpy.arange(12, dtype=numpy.float32).reshape(3, 4)
    assert hash_tensor(arr) == hash_tensor(torch.from_numpy(arr))
    assert hash_tensor(arr.T) == hash_tensor(numpy.ascontiguousarray(arr.T))
    assert hash_tensor(arr.T) != hash_tensor(arr)


# --------------------------------------------------------------------------------------------
# describe_tensor
# --------------------------------------------------------------------------------------------


def test_describe_tensor_records_metadata():
    p = torch.nn.Parameter(torch.zeros(3, 4, dtype=torch.float64))
    info = describe_tensor(p)
    assert info["dtype"] == "torch.float64"
    assert info["shape"] == [3, 4]
    assert info["stride"] == [4, 1]
    assert info["requires_grad"] is True
    assert info["nbytes"] == 3 * 4 * 8
    assert info["device"] == "cpu"
    assert info["hash"] == hash_tensor(p)

    t = torch.zeros(3, 4, dtype=torch.int64).t()
    info = describe_tensor(t)
    assert info["dtype"] == "torch.int64"
    assert info["shape"] == [4, 3]
    assert info["stride"] == [1, 4]
    assert info["requires_grad"] is False


def test_describe_tensor_numpy():
    arr = numpy.zeros((3, 4), dtype=numpy.int16)
    info = describe_tensor(arr)
    assert info["dtype"] == "numpy.int16"
    assert info["shape"] == [3, 4]
    assert info["stride"] == [4, 1]  # in elements, not bytes
    assert info["requires_grad"] is False
    assert info["nbytes"] == 24


# --------------------------------------------------------------------------------------------
# fingerprint / sharing_groups
# --------------------------------------------------------------------------------------------


def test_fingerprint_groups_tied_parameters():
    net = TiedNet()
    fp = fingerprint(net)
    tensors = fp["tensors"]
    assert set(tensors) == {"encoder.weight", "decoder.weight", "decoder.bias"}
    assert tensors["encoder.weight"]["share_group"] == "encoder.weight"
    assert tensors["decoder.weight"]["share_group"] == "encoder.weight"
    assert tensors["decoder.bias"]["share_group"] == "decoder.bias"
    assert tensors["encoder.weight"]["requires_grad"] is True
    assert sharing_groups(tensors) == [["decoder.weight", "encoder.weight"]]
    # the tied weight counts once: 16 float32 + 4 float32 bias
    assert fp["view_bytes_bound"] == (16 + 4) * 4


def test_fingerprint_untied_parameters_not_grouped():
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
    fp = fingerprint(net)
    assert sharing_groups(fp["tensors"]) == []
    assert fp["view_bytes_bound"] == 2 * (16 + 4) * 4


def test_fingerprint_view_and_base_share_and_count_once():
    base = torch.arange(100, dtype=torch.float32)
    other = torch.zeros(7, dtype=torch.int64)
    payload = {"base": base, "view": base[10:20], "reshaped": base.view(10, 10), "other": other}
    fp = fingerprint(payload)
    tensors = fp["tensors"]
    assert tensors["view"]["share_group"] == "base"
    assert tensors["reshaped"]["share_group"] == "base"
    assert tensors["other"]["share_group"] == "other"
    assert sharing_groups(tensors) == [["base", "reshaped", "view"]]
    assert fp["view_bytes_bound"] == 100 * 4 + 7 * 8  # not 100*4 + 10*4 + 100*4 + ...


def test_fingerprint_share_group_names_first_in_walk_order():
    base = torch.arange(10.0)
    fp = fingerprint({"a_view": base[2:4], "z_base": base})
    assert fp["tensors"]["a_view"]["share_group"] == "a_view"
    assert fp["tensors"]["z_base"]["share_group"] == "a_view"


def test_fingerprint_view_bytes_bound_is_span_of_views():
    base = torch.arange(100, dtype=torch.float32)
    # only a view is included: the bound is its span, not the whole storage
    assert fingerprint({"v": base[10:20]})["view_bytes_bound"] == 10 * 4
    # two views of one storage: the span from the first start to the last end
    assert fingerprint({"a": base[10:20], "b": base[30:40]})["view_bytes_bound"] == 30 * 4
    # overlapping views are not double counted
    assert fingerprint({"a": base[10:30], "b": base[20:40]})["view_bytes_bound"] == 30 * 4
    # a strided view spans from its first to its last element
    assert fingerprint({"s": base[::10]})["view_bytes_bound"] == (90 + 1) * 4


def test_fingerprint_zero_size_tensors_unshared():
    payload = {"a": torch.empty(0), "b": torch.empty(0, 3), "c": torch.zeros(0, dtype=torch.int64)}
    fp = fingerprint(payload)
    groups = {name: info["share_group"] for name, info in fp["tensors"].items()}
    assert groups == {"a": "a", "b": "b", "c": "c"}
    assert sharing_groups(fp["tensors"]) == []
    assert fp["view_bytes_bound"] == 0


def test_fingerprint_scalars_and_numpy():
    ns = argparse.Namespace(lr=0.1, name="run", bad=float("nan"))
    arr = numpy.ones(3, dtype=numpy.float64)
    fp = fingerprint({"args": ns, "arr": arr, "epoch": 3, "none": None})
    assert fp["scalars"]["args.lr"] == {"type": "builtins.float", "value": 0.1}
    assert fp["scalars"]["args.name"] == {"type": "builtins.str", "value": "run"}
    assert fp["scalars"]["args.bad"] == {"type": "builtins.float", "value": "nan"}
    assert fp["scalars"]["epoch"] == {"type": "builtins.int", "value": 3}
    assert fp["scalars"]["none"]["value"] is None
    assert fp["tensors"]["arr"]["share_group"] == "arr"
    assert fp["view_bytes_bound"] == 24


def test_sharing_groups_only_groups_of_two_or_more_sorted():
    tensors = {
        "z": {"share_group": "b"},
        "b": {"share_group": "b"},
        "a": {"share_group": "a"},
        "y": {"share_group": "c"},
        "c": {"share_group": "c"},
        "x": {"share_group": "c"},
    }
    assert sharing_groups(tensors) == [["b", "z"], ["c", "x", "y"]]
    assert sharing_groups({}) == []


# --------------------------------------------------------------------------------------------
# flatten / collect_metadata
# --------------------------------------------------------------------------------------------


def test_flatten_walks_containers_and_yields_scalars():
    t1, t2 = torch.zeros(1), torch.ones(2)
    lin = torch.nn.Linear(2, 1)
    obj = {
        "model": lin,
        "opt": {"state": [t1, (t2, 5)], "lr": 0.5},
        "args": argparse.Namespace(seed=7, tag="x"),
        "name": "ckpt",
        3: None,
    }
    items = list(flatten(obj))
    paths = [p for p, _ in items]
    assert paths == ["model.weight", "model.bias", "opt.state.0", "opt.state.1.0", "opt.state.1.1", "opt.lr",
                     "args.seed", "args.tag", "name", "3"]
    leaves = dict(items)
    assert leaves["model.weight"] is lin.weight  # keep_vars: the Parameter itself
    assert leaves["opt.state.0"] is t1 and leaves["opt.state.1.0"] is t2
    assert leaves["opt.state.1.1"] == 5
    assert leaves["args.seed"] == 7 and leaves["args.tag"] == "x"
    assert leaves["3"] is None


def test_flatten_leaf_at_root():
    t = torch.zeros(2)
    assert list(flatten(t)) == [("", t)]
    assert list(flatten(4.0)) == [("", 4.0)]
    assert list(flatten({})) == []


def test_collect_metadata_finds_nested_state_dict():
    inner = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    sd = inner.state_dict()
    assert hasattr(sd, "_metadata")
    found = collect_metadata({"epoch": 3, "wrap": {"model": sd}, "plain": {"w": torch.zeros(1)}})
    assert set(found) == {"wrap.model"}
    meta = found["wrap.model"]
    assert "1" in meta  # the BatchNorm submodule
    assert meta["1"]["version"] == sd._metadata["1"]["version"]
    assert collect_metadata({"w": torch.zeros(1)}) == {}


def test_collect_metadata_at_root():
    sd = torch.nn.Linear(2, 2).state_dict()
    found = collect_metadata(sd)
    assert list(found) == ["<root>"]
    assert "" in found["<root>"]


# --------------------------------------------------------------------------------------------
# compat
# --------------------------------------------------------------------------------------------


def test_storage_key_tied_and_views_equal():
    net = TiedNet()
    assert compat.storage_key(net.encoder.weight) == compat.storage_key(net.decoder.weight)
    assert compat.storage_key(net.encoder.weight) != compat.storage_key(net.decoder.bias)
    base = torch.arange(10.0)
    assert compat.storage_key(base) == compat.storage_key(base[3:5])
    assert compat.storage_key(base) == compat.storage_key(base.view(2, 5).t())
    assert compat.storage_key(base) != compat.storage_key(base.clone())


def test_storage_key_zero_size_unshared():
    a, b = torch.empty(0), torch.empty(0)
    assert compat.storage_key(a) != compat.storage_key(b)
    assert compat.storage_key(a)[0] == "unshared"


def test_storage_nbytes_is_whole_storage():
    base = torch.arange(10, dtype=torch.float64)
    assert compat.storage_nbytes(base[2:4]) == 80


def test_import_optional_success():
    module, reason = compat.import_optional("json")
    assert reason is None
    assert module is not None and hasattr(module, "dumps")


def test_import_optional_missing_module():
    module, reason = compat.import_optional("no_such_module_ckpt_harness_xyz")
    assert module is None
    assert isinstance(reason, str)
    assert "\n" not in reason
    assert "no_such_module_ckpt_harness_xyz" in reason
    assert "ModuleNotFoundError" in reason


def test_import_optional_module_raising_runtime_error(tmp_path, monkeypatch):
    name = "ckpt_harness_broken_mod"
    (tmp_path / f"{name}.py").write_text(
        'raise RuntimeError("operator torchvision::nms does not exist\\nsecond line of detail")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(__import__("sys").modules, name, raising=False)
    module, reason = compat.import_optional(name)
    assert module is None
    assert isinstance(reason, str)
    assert "\n" not in reason
    assert name in reason
    assert "RuntimeError" in reason
    assert "operator torchvision::nms does not exist" in reason
    assert "second line" not in reason


# --------------------------------------------------------------------------------------------
# the independent oracle (tests/oracle.py): a stride walk and SHA-256, none of harness.fingerprint
# --------------------------------------------------------------------------------------------


def _layouts() -> list[tuple[str, torch.Tensor]]:
    torch.manual_seed(0)
    base = torch.randn(6, 5)
    found = [
        ("contiguous", base),
        ("transposed", base.t()),
        ("sliced", base[1:5:2, ::2]),
        ("offset view", base.view(-1)[7:19]),
        ("expanded (stride 0)", torch.randn(1, 3).expand(4, 3)),
        ("channels_last", torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last)),
        ("zero-dim", torch.tensor(3.5)),
        ("zero-size", torch.zeros(0, 3)),
        ("conjugate view", torch.randn(3, dtype=torch.complex64).conj()),
        ("negative view", torch.randn(4, dtype=torch.complex64).conj().imag),
        ("requires_grad", torch.nn.Parameter(torch.randn(3, 2))),
    ]
    found += [(f"dtype {d}", (torch.randn(4, 3) * 10).to(d)) for d in DTYPES]
    return found


@pytest.mark.parametrize("label, tensor", _layouts(), ids=[label for label, _ in _layouts()])
def test_oracle_and_fingerprint_read_the_same_bytes(label: str, tensor: torch.Tensor) -> None:
    from tests.oracle import element_bytes

    assert element_bytes(tensor) == bytes(tensor_bytes(tensor))
    assert len(element_bytes(tensor)) == tensor.numel() * tensor.element_size()


@pytest.mark.parametrize("label, tensor", _layouts(), ids=[label for label, _ in _layouts()])
def test_oracle_and_fingerprint_agree_on_every_change(label: str, tensor: torch.Tensor) -> None:
    """Equal hashes exactly when the oracle's digests are equal: for a copy, a flipped bit, a swap."""
    from tests.oracle import digest

    others = [tensor.detach().clone()]
    if tensor.numel():
        flipped = tensor.detach().resolve_conj().resolve_neg().clone().contiguous()
        flipped.reshape(-1).view(torch.uint8)[0] ^= 1
        others.append(flipped)
        others.append(tensor.detach().flip(list(range(tensor.dim()))) if tensor.dim() else tensor.detach() + 1)
    for other in others:
        assert (hash_tensor(tensor) == hash_tensor(other)) == (digest(tensor)[2] == digest(other)[2]), other


def test_oracle_and_fingerprint_agree_on_a_whole_payload() -> None:
    from tests.oracle import oracle

    net = TiedNet()
    payload = {"model": net, "view": net.encoder.weight.detach()[1:], "epoch": 3, "loss": float("nan"),
               "ns": argparse.Namespace(lr=0.1), "arr": numpy.arange(6.0).reshape(2, 3).T, "empty": torch.zeros(0)}
    fp, ref = fingerprint(payload), oracle(payload)
    assert set(fp["tensors"]) == set(ref["tensors"])
    assert set(fp["scalars"]) == set(ref["values"])
    assert sharing_groups(fp["tensors"]) == ref["shared"]
    for path, info in fp["tensors"].items():
        assert (info["dtype"], tuple(info["shape"])) == ref["tensors"][path][:2]


def test_oracle_differences_name_each_kind() -> None:
    from tests.oracle import oracle, oracle_differences

    a = {"w": torch.ones(2), "v": torch.zeros(1), "n": 1}
    b = {"w": torch.ones(2) * 2, "x": torch.zeros(1), "n": 2}
    found = oracle_differences(oracle(a), oracle(b))
    assert any("v missing" in p for p in found) and any("x unexpected" in p for p in found)
    assert any(p.startswith("oracle: w ") for p in found) and "oracle: non-tensor values differ" in found
    assert oracle_differences(oracle(a), oracle({k: (v.clone() if isinstance(v, torch.Tensor) else v)
                                                 for k, v in a.items()})) == []


# -- branches the mutation run found untested (nox -s mutants over harness/fingerprint.py) ---------------


def test_hash_file_is_the_xxh3_of_the_whole_file_whatever_the_chunk(tmp_path) -> None:
    import xxhash

    from harness.fingerprint import hash_file

    path = tmp_path / "blob"
    data = bytes(range(256)) * 5
    path.write_bytes(data)
    assert hash_file(path) == hash_file(path, chunk=7) == xxhash.xxh3_128_hexdigest(data)
    path.write_bytes(b"")
    assert hash_file(path) == xxhash.xxh3_128_hexdigest(b"")


def test_scalar_repr_names_type_and_value_exactly() -> None:
    from harness.fingerprint import scalar_repr

    assert scalar_repr(1.5) == {"type": "builtins.float", "value": 1.5}
    assert scalar_repr(float("nan")) == {"type": "builtins.float", "value": "nan"}
    assert scalar_repr(None) == {"type": "builtins.NoneType", "value": None}
    assert scalar_repr(numpy.int64(3)) == {"type": "numpy.int64", "value": "3"}
    long = "x" * 300
    assert scalar_repr([long]) == {"type": "builtins.list", "value": repr([long])[:200]}
    assert len(scalar_repr([long])["value"]) == 200


def test_describe_tensor_numpy_strides_are_whole_elements() -> None:
    info = describe_tensor(numpy.zeros((2, 3), dtype=numpy.uint8))
    assert info["stride"] == [3, 1] and all(type(s) is int for s in info["stride"])
    wide = describe_tensor(numpy.zeros((2, 3), dtype=numpy.float64).T)
    assert wide["stride"] == [1, 3] and all(type(s) is int for s in wide["stride"])


def test_view_bytes_bound_spans_from_the_earliest_view_whatever_the_walk_order() -> None:
    base = torch.arange(10.0)
    assert fingerprint({"late": base[5:], "early": base[:3]})["view_bytes_bound"] == 10 * 4
    assert fingerprint({"one": torch.ones(1)})["view_bytes_bound"] == 4
    assert fingerprint({"none": torch.ones(0), "one": torch.ones(1)})["view_bytes_bound"] == 4


def test_optimizer_fingerprint_holds_state_and_groups() -> None:
    from harness.fingerprint import optimizer_fingerprint

    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    state = optimizer.state_dict()
    found = optimizer_fingerprint(state)
    assert found["param_groups"][0]["params"] == [0, 1]
    assert found["param_groups"][0]["lr"] == {"type": "builtins.float", "value": 0.01}
    assert found["state"] == fingerprint(state["state"])["tensors"] and found["state"]
    state["state"][0]["exp_avg"].add_(1)
    state["param_groups"][0]["lr"] = 0.02
    changed = optimizer_fingerprint(state)
    assert changed["state"] != found["state"] and changed["param_groups"] != found["param_groups"]
    assert optimizer_fingerprint({}) == {"state": {}, "param_groups": []}
