"""``BoundedMemo``: a dict emptied whole when full; ``IdentityMemo``: values found again only for the very object
they were stored for, within a fixed bound."""

from __future__ import annotations

from gateway_authz.core.memo import BoundedMemo, IdentityMemo


def test_a_bounded_memo_holds_what_was_put_and_returns_it() -> None:
    """``put`` stores and hands back the value; reading is the plain dict's."""
    memo: BoundedMemo[str, int] = BoundedMemo(4)
    assert memo.put("a", 1) == 1
    assert memo.get("a") == 1 and "a" in memo and memo.get("b") is None


def test_a_bounded_memo_starts_over_when_full() -> None:
    """At most ``size`` entries: the put that would exceed it empties the memo first."""
    memo: BoundedMemo[str, int] = BoundedMemo(2)
    memo.put("a", 1)
    memo.put("b", 2)
    assert dict(memo) == {"a": 1, "b": 2}
    memo.put("c", 3)
    assert dict(memo) == {"c": 3}


def test_the_same_object_finds_its_value() -> None:
    """A value stored for an object is returned for that object under the same key."""
    memo: IdentityMemo[str] = IdentityMemo(4)
    obj = object()
    assert memo.get(obj, id(obj)) is None
    assert memo.put(obj, id(obj), "parts") == "parts"
    assert memo.get(obj, id(obj)) == "parts"


def test_another_object_under_the_same_key_finds_nothing() -> None:
    """A key (an id) that another object now holds never returns the first object's value."""
    memo: IdentityMemo[str] = IdentityMemo(4)
    first, second = object(), object()
    memo.put(first, 42, "first's")
    assert memo.get(second, 42) is None


def test_the_memo_is_cleared_when_full() -> None:
    """At most ``size`` entries: the one that would exceed it starts over from empty."""
    memo: IdentityMemo[int] = IdentityMemo(2)
    objs = [object() for _ in range(3)]
    for n, obj in enumerate(objs):
        memo.put(obj, id(obj), n)
    assert memo.get(objs[0], id(objs[0])) is None and memo.get(objs[1], id(objs[1])) is None
    assert memo.get(objs[2], id(objs[2])) == 2


def test_a_bounded_memo_is_bounded_in_bytes_not_only_entries() -> None:
    """Issue 18: 1,000 entries keyed by 50 KB strings would hold 50 MB; the byte bound keeps the memo under it."""
    memo: BoundedMemo[str, str] = BoundedMemo(1000, max_bytes=1024 * 1024)
    for i in range(1000):
        memo.put(f"{i:05d}" + "x" * 50_000, "v")
    assert memo.weight <= 1024 * 1024
    assert sum(len(k) for k in memo) <= 1024 * 1024


def test_an_entry_too_heavy_for_the_memo_is_not_stored_and_keeps_the_others() -> None:
    memo: BoundedMemo[str, str] = BoundedMemo(10, max_bytes=16 * 1024)
    memo.put("small", "v")
    assert memo.put("x" * 2000, "big") == "big"
    assert "x" * 2000 not in memo and memo.get("small") == "v"


def test_clear_forgets_the_weight() -> None:
    memo: BoundedMemo[str, str] = BoundedMemo(10)
    memo.put("a" * 100, "b")
    memo.clear()
    assert memo.weight == 0 and not memo


def test_an_identity_memo_is_bounded_in_bytes() -> None:
    memo: IdentityMemo[str] = IdentityMemo(1000, max_bytes=1024 * 1024)
    keep = [object() for _ in range(500)]
    for obj in keep:
        memo.put(obj, (id(obj), "p" * 50_000), "h" * 10_000)
    assert memo.weight <= 1024 * 1024
