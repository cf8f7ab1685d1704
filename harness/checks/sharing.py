"""Sharing: tensors that shared storage when saved still share after loading (tied weights stay
tied), and a saved view does not make the file hold more tensor bytes than the tensors span.

Both halves judge what the consumer sees: the sharing groups of what it loaded, and the tensor
bytes it measures in the file it loaded against the span of the tensors it loaded. The
producer's figures are never taken on trust (a manifest may come from anywhere).
"""

from __future__ import annotations

from harness.checks import Check, Context, Outcome, failed, passed, register, skipped
from harness.fingerprint import sharing_groups

#: bytes a container may add to the tensors' span (alignment, a non-persistent buffer, RNG state)
SLACK_BYTES = 4096
SLACK_FRACTION = 0.01


def allowed_bytes(bound: int) -> int:
    """The most tensor bytes a file may store for tensors that span ``bound`` bytes."""
    return bound + SLACK_BYTES + int(bound * SLACK_FRACTION)


class SharingCheck(Check):
    name = "sharing"
    description = "storage-sharing groups survive the round trip; stored tensor bytes stay within the views' span"

    def run(self, ctx: Context) -> Outcome:
        recorded = ctx.entry["fingerprint"]["tensors"]
        if not recorded:
            return skipped("the producer's fingerprint lists no tensors: no sharing and no bytes to compare")
        expected = sharing_groups(recorded)
        actual = sharing_groups(ctx.actual["tensors"])
        if expected != actual:
            lost = [g for g in expected if g not in actual]
            new = [g for g in actual if g not in expected]
            return failed(f"sharing changed: lost {lost or 'none'}, new {new or 'none'}")
        stored, bound = ctx.fmt.stored_tensor_bytes(ctx.artifact), ctx.actual["view_bytes_bound"]
        allowed = allowed_bytes(bound)
        groups = f"{len(expected)} shared group(s) kept"
        if stored > allowed:
            if ctx.fmt.view_growth:
                return passed(f"{groups}; stores {stored} bytes for a {bound}-byte span (known: {ctx.fmt.view_growth})")
            return failed(f"{groups} but the file stores {stored} tensor bytes for a {bound}-byte span")
        return passed(f"{groups}; {stored} tensor bytes stored for a {bound}-byte span")


register(SharingCheck())
