"""How much time does the harness add on top of torch.save + torch.load? (a benchmark, not a test)

For a state_dict of SIZE_MB (default 256), it times in one run, on the same bytes:
raw ``torch.save`` + ``torch.load``, and the harness's own work around them: the producer's
fingerprint and file hash, the consumer's hash verification and fingerprint of what it loaded.
It prints the overhead as a fraction of the raw save + load time (target: under 0.5).

    python benchmarks/overhead.py [SIZE_MB] [ROUNDS]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from harness.fingerprint import fingerprint, hash_file
from harness.formats import FORMATS


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main(size_mb: int = 256, rounds: int = 3) -> None:
    torch.manual_seed(0)
    per = 16 * 1024 * 1024  # 64 MB float32 tensors
    state = {f"layer{i}.weight": torch.randn(per) for i in range(max(1, size_mb * 1024 * 1024 // (per * 4)))}
    fmt = FORMATS.get("state_dict_zip")
    raw, overhead = [], []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sd.pt"
        for _ in range(rounds):
            save = timed(lambda: torch.save(state, path))
            loaded = {}
            load = timed(lambda loaded=loaded: loaded.update(torch.load(path, weights_only=True)))
            produce_side = timed(lambda: (fingerprint(state), hash_file(path), fmt.stored_tensor_bytes(path)))
            consume_side = timed(lambda loaded=loaded: (hash_file(path), fingerprint(loaded)))
            raw.append(save + load)
            overhead.append(produce_side + consume_side)
            print(f"save {save:.3f}s load {load:.3f}s | harness: produce {produce_side:.3f}s "
                  f"consume {consume_side:.3f}s")
    total = sum(t.numel() * t.element_size() for t in state.values()) / 1e6
    ratio = statistics.median(overhead) / statistics.median(raw)
    print(f"{total:.0f} MB: median raw save+load {statistics.median(raw):.3f}s, "
          f"harness overhead {statistics.median(overhead):.3f}s = {ratio:.2f} of raw (target < 0.5)")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
