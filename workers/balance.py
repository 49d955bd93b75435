"""Symbols spread evenly across the live workers (issue 12).

Each worker keeps a heartbeat key `<prefix>:workers:<id>` with a TTL (`WorkerRegistry`): the live
workers are those whose key exists. Each symbol is consumed under its lease (`workers.lease`), whose
value names its holder, so who holds what is read from the leases themselves — never from a report
that could be stale.

The fair share is ceil(watched symbols / live workers). Each round, a worker (`plan`):
- takes free symbols while it holds fewer than its share;
- releases its surplus over the share, but only as many as the other live workers lack — so a
  worker at its share never gives a symbol away for nobody to take (no flapping), and when all
  symbols are held the surplus released is never more than what the others take.
A worker that joins is under its share at once and the others release for it within a round; one
that leaves stops renewing its heartbeat and leases (or deletes them on a clean stop), and the rest
take its symbols once they are free, their shares grown. The hand-over itself is clean: the releasing
consumer finishes the event in hand, saves its checkpoint and releases the lease; the next holder
resumes from that checkpoint (see `workers.market`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from redis.asyncio import Redis


@dataclass(frozen=True)
class Plan:
    share: int  # the fair share of every live worker
    take: int  # how many free symbols this worker may take now
    release: int  # how many of its symbols it hands over now


def plan(holders: Mapping[str, str | None], live: Collection[str], me: str) -> Plan:
    """What `me` should do, given the holder of each watched symbol (None: free) and the live workers.

    A symbol held by a worker that is no longer live (its heartbeat expired before its leases) is
    neither free nor counted: it becomes free when its lease expires."""
    workers = set(live) | {me}
    share = math.ceil(len(holders) / len(workers)) if holders else 0
    counts = Counter(holder for holder in holders.values() if holder in workers)
    mine = counts[me]
    lacking = sum(max(0, share - counts[w]) for w in workers if w != me)
    return Plan(share=share, take=max(0, share - mine), release=min(max(0, mine - share), lacking))


class WorkerRegistry:
    """The heartbeats of the live workers: `<prefix>:workers:<id>`, renewed every round."""

    def __init__(self, redis: Redis, prefix: str, owner: str, ttl: float) -> None:
        self.redis = redis
        self.prefix = prefix
        self.owner = owner
        self.ttl_ms = max(1, int(ttl * 1000))

    def key(self, owner: str) -> str:
        return f"{self.prefix}{owner}"

    async def beat(self) -> None:
        await self.redis.set(self.key(self.owner), "1", px=self.ttl_ms)

    async def leave(self) -> None:
        await self.redis.delete(self.key(self.owner))

    async def live(self) -> set[str]:
        found: set[str] = set()
        async for key in self.redis.scan_iter(match=f"{self.prefix}*", count=500):
            name = key.decode() if isinstance(key, bytes) else str(key)
            found.add(name[len(self.prefix) :])
        return found
