"""The assignment function: every wanted slot placed, load proportional to capacity, capability matching."""
from hypothesis import given, settings
from hypothesis import strategies as st

from atlasrl.coordinator.assignment import Actor, Server, assign, fingerprint


def test_balanced_by_capacity():
    servers = [Server("s-a", "h:1", 4), Server("s-b", "h:2", 2)]
    out = assign([Actor("a-1", 3), Actor("a-2", 3)], servers)
    per_server = {"s-a": 0, "s-b": 0}
    for slots in out.values():
        for s, n in slots:
            per_server[s.member_id] += n
    assert per_server == {"s-a": 4, "s-b": 2}
    assert all(sum(n for _, n in slots) == 3 for slots in out.values())


def test_capabilities_and_no_servers():
    servers = [Server("s-a", "h:1", 4, ("sokoban",)), Server("s-b", "h:2", 4, ("frozenlake",))]
    out = assign([Actor("a", 3, ("frozenlake",)), Actor("b", 2, ("maniskill",))], servers)
    assert [(s.member_id, n) for s, n in out["a"]] == [("s-b", 3)]
    assert out["b"] == []
    assert assign([Actor("a", 3)], []) == {"a": []}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 16), min_size=1, max_size=6), st.lists(st.integers(0, 20), min_size=1, max_size=6))
def test_properties(capacities, wants):
    servers = [Server(f"s{i}", f"h:{i}", c) for i, c in enumerate(capacities)]
    actors = [Actor(f"a{i}", w) for i, w in enumerate(wants)]
    out = assign(actors, servers)
    assert fingerprint(out) == fingerprint(assign(list(reversed(actors)), list(reversed(servers))))  # order-free
    load = {s.member_id: 0 for s in servers}
    for a in actors:
        assert sum(n for _, n in out[a.member_id]) == a.wanted
        for s, n in out[a.member_id]:
            load[s.member_id] += n
    # greedy water-filling: no server could give one slot to another and lower the max load
    ratios = [load[s.member_id] / s.capacity for s in servers]
    for s in servers:
        if load[s.member_id]:
            after = (load[s.member_id] - 1) / s.capacity
            assert all((load[o.member_id] + 1) / o.capacity >= after - 1e-9 for o in servers)
    assert max(ratios) <= (sum(wants) / sum(capacities)) + 1.0 / min(capacities) + 1e-9
