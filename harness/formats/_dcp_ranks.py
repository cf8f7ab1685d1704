"""DCP across process groups: 2 gloo processes on the CPU save and load a model and its Adam state as
row-sharded DTensors, so a folder written by 2 ranks is read by 1 process (2 → 1) and one written by a
single process is read by 2 ranks (1 → 2), each compared with the full tensors bit for bit.

Run as ``python -m harness.formats._dcp_ranks ACTION FOLDER REFERENCE RANK PORT``; :func:`run_ranks`
starts the 2 ranks on a free localhost port. The model is fixed here (two Linear layers whose rows
divide evenly between 2 ranks) so the reference is the same in every process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

WORLD = 2


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2))


def inputs() -> torch.Tensor:
    return torch.randn(3, 4, generator=torch.Generator().manual_seed(1))


def _state(net: nn.Module, optimizer: Any) -> dict[str, Any]:
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    return {"model": get_model_state_dict(net), "optim": get_optimizer_state_dict(net, optimizer)}


def _set(net: nn.Module, optimizer: Any, state: dict[str, Any]) -> None:
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    set_model_state_dict(net, state["model"])
    set_optimizer_state_dict(net, optimizer, state["optim"])


def _full(value: Any) -> Any:
    """Tensors (DTensors gathered) of a nested state, on the CPU."""
    if isinstance(value, dict):
        return {k: _full(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_full(v) for v in value]
    if hasattr(value, "full_tensor"):
        return value.full_tensor().detach().cpu()
    return value.detach().cpu() if isinstance(value, torch.Tensor) else value


def trained(sharded: bool) -> tuple[nn.Module, Any]:
    """The model after one Adam step, its parameters row-sharded over the ranks when ``sharded``."""
    net = model()
    x = inputs()
    if sharded:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.tensor import Replicate, Shard, distribute_module, distribute_tensor

        mesh = init_device_mesh("cpu", (WORLD,))

        def shard_rows(name: str, module: nn.Module, mesh: Any) -> None:
            for key, param in list(module.named_parameters(recurse=False)):
                module.register_parameter(key, nn.Parameter(distribute_tensor(param.data, mesh, [Shard(0)])))

        distribute_module(net, mesh, shard_rows)
        x = distribute_tensor(x, mesh, [Replicate()])
    optimizer = torch.optim.Adam(net.parameters(), lr=0.1)
    net(x).sum().backward()
    optimizer.step()
    return net, optimizer


def save(folder: Path, reference: Path, sharded: bool) -> None:
    """One Adam step, ``dcp.save`` to ``folder``; rank 0 (or the single process) writes the full
    tensors to ``reference`` with torch.save."""
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp

    net, optimizer = trained(sharded)
    state = _state(net, optimizer)
    dcp.save(state, checkpoint_id=str(folder))
    full = _full(state)
    if not sharded or dist.get_rank() == 0:
        torch.save(full, reference)


def load(folder: Path, reference: Path, sharded: bool) -> list[str]:
    """A fresh model and optimizer (sharded or not), ``dcp.load`` of ``folder`` into them, then every
    tensor compared with ``reference``; the differences (empty when bit-identical)."""
    import torch.distributed.checkpoint as dcp

    net, optimizer = trained(sharded)
    with torch.no_grad():  # wipe every value, so that only the load can bring them back
        for param in net.parameters():
            param.zero_()
        for values in optimizer.state.values():
            for value in values.values():
                if isinstance(value, torch.Tensor):
                    value.zero_()
    state = _state(net, optimizer)
    dcp.load(state, checkpoint_id=str(folder))
    _set(net, optimizer, state)
    actual = _full(_state(net, optimizer))
    expected = torch.load(reference, weights_only=True)
    return differences(expected, actual)


def differences(expected: Any, actual: Any, where: str = "") -> list[str]:
    """Paths where two nested states differ (tensors bit for bit, other leaves by equality)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict) or set(expected) != set(actual):
            return [f"{where or 'state'}: keys differ"]
        return [d for k in expected for d in differences(expected[k], actual[k], f"{where}.{k}")]
    if isinstance(expected, torch.Tensor):
        same = isinstance(actual, torch.Tensor) and expected.shape == actual.shape and torch.equal(expected, actual)
        return [] if same else [f"{where}: values differ"]
    return [] if expected == actual else [f"{where}: {expected!r} != {actual!r}"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_ranks(action: str, folder: Path, reference: Path, timeout: float = 300) -> list[dict[str, Any]]:
    """``action`` (save or load) in 2 gloo processes; each rank's JSON answer."""
    port = str(free_port())
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "WORLD_SIZE": str(WORLD)}
    procs = [subprocess.Popen([sys.executable, "-m", "harness.formats._dcp_ranks", action, str(folder), str(reference)],
                              env={**env, "RANK": str(rank)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for rank in range(WORLD)]
    answers = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for other in procs:
                other.kill()
            raise
        lines = [line for line in out.splitlines() if line.startswith("{")]
        answers.append(json.loads(lines[-1]) if lines and proc.returncode == 0
                       else {"error": f"exit {proc.returncode}: {err.strip().splitlines()[-1:] or ''}"})
    return answers


def main(argv: Optional[list[str]] = None) -> int:
    import torch.distributed as dist

    action, folder, reference = (argv or sys.argv[1:])[:3]
    dist.init_process_group("gloo")
    try:
        if action == "save":
            save(Path(folder), Path(reference), sharded=True)
            answer: dict[str, Any] = {"rank": dist.get_rank(), "saved": True}
        else:
            answer = {"rank": dist.get_rank(), "differences": load(Path(folder), Path(reference), sharded=True)}
    finally:
        dist.destroy_process_group()
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
