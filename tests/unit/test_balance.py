"""The fair share of symbols between live workers (workers.balance.plan)."""

from __future__ import annotations

from workers.balance import Plan, plan

SIX = [f"S{i}" for i in range(6)]


def held(*owners: str | None) -> dict[str, str | None]:
    return dict(zip(SIX, owners, strict=True))


def test_a_lone_worker_takes_every_symbol() -> None:
    assert plan(held(*[None] * 6), {"a"}, "a") == Plan(share=6, take=6, release=0)


def test_a_worker_that_joins_is_given_its_share_by_those_over_theirs() -> None:
    holders = held("a", "a", "a", "b", "b", "b")
    assert plan(holders, {"a", "b", "c"}, "a") == Plan(share=2, take=0, release=1)
    assert plan(holders, {"a", "b", "c"}, "b") == Plan(share=2, take=0, release=1)
    assert plan(holders, {"a", "b", "c"}, "c") == Plan(share=2, take=2, release=0)


def test_no_release_when_nobody_lacks_symbols() -> None:
    # 5 symbols over 2 workers: 3 and 2 is even; the one with 3 keeps them (no flapping).
    holders = {"S0": "a", "S1": "a", "S2": "a", "S3": "b", "S4": "b"}
    assert plan(holders, {"a", "b"}, "a") == Plan(share=3, take=0, release=0)
    # One symbol, two workers: the holder keeps it.
    assert plan({"S0": "a"}, {"a", "b"}, "a").release == 0
    assert plan({"S0": "a"}, {"a", "b"}, "b") == Plan(share=1, take=1, release=0)


def test_the_surplus_released_is_never_more_than_others_lack() -> None:
    # c has 1 of its 2: a, holding 5, gives one, not three.
    holders = held("a", "a", "a", "a", "a", "c")
    assert plan(holders, {"a", "c"}, "a") == Plan(share=3, take=0, release=2)
    assert plan(holders, {"a", "b", "c"}, "a") == Plan(share=2, take=0, release=3)
    holders = held("a", "a", "a", "a", "c", "c")
    assert plan(holders, {"a", "c", "b"}, "a").release == 2


def test_the_symbols_of_a_dead_worker_are_taken_as_they_come_free() -> None:
    # b died: its heartbeat expired; its leases still run (not free, not counted).
    holders = held("a", "a", "b", "b", "c", "c")
    assert plan(holders, {"a", "c"}, "a") == Plan(share=3, take=1, release=0)
    holders = held("a", "a", None, None, "c", "c")
    assert plan(holders, {"a", "c"}, "a") == Plan(share=3, take=1, release=0)


def test_no_symbols() -> None:
    assert plan({}, {"a", "b"}, "a") == Plan(share=0, take=0, release=0)
