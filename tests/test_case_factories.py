"""Cases take any optimizer and scheduler factory (issue 11: AdamW + cosine could not be expressed)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.case import Case, prepare


def _case(**kwargs) -> Case:  # type: ignore[no-untyped-def]
    return Case("adamw_cosine", "-", lambda: nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.1), nn.Linear(4, 2)),
                lambda: (torch.randn(3, 4),), **kwargs)


def test_adamw_and_cosine_factories_are_used() -> None:
    case = _case(optimizer=lambda params: torch.optim.AdamW(params, lr=3e-3, weight_decay=0.01),
                 scheduler=lambda optimizer: torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10))
    prepared = prepare(case, steps=2)
    optimizer, scheduler = prepared.optimizers["model"], prepared.schedulers["model"]
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.state
    assert isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR) and scheduler.last_epoch == 2
    assert case.resume_atol == pytest.approx(case.atol + 2 * 3e-3)
    assert case.optimizer_name == "<lambda>"


def test_named_optimizers_keep_their_defaults() -> None:
    prepared = prepare(_case(optimizer="sgd"), steps=1)
    assert isinstance(prepared.optimizers["model"], torch.optim.SGD)
    assert isinstance(prepared.schedulers["model"], torch.optim.lr_scheduler.StepLR)
    assert _case(optimizer="sgd").resume_atol == _case().atol


@pytest.mark.parametrize("kwargs, words", [({"optimizer": "lion"}, "optimizer must be one of"),
                                           ({"scheduler": "cosine"}, "scheduler must be a factory")])
def test_bad_factories_are_refused(kwargs: dict, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        _case(**kwargs)


@pytest.mark.slow
def test_resume_records_say_bitexact(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import records, run_cli

    results = tmp_path / "r.jsonl"
    done = run_cli("roundtrip", "--case", "simple", "--format", "training_checkpoint", "--results", str(results))
    assert done.returncode == 0, done.stderr[-2000:]
    resumed = [r for r in records(results) if r["check"] == "resume" and r["status"] != "skip"]
    assert resumed and all(r["detail"].startswith("bitexact: true; ") for r in resumed), resumed
