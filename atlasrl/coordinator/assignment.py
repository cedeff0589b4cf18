"""Which env servers each actor uses: slots spread over servers in proportion to their capacity.

A pure function of the live members, so the same membership always gives the
same assignment (a restarted coordinator does not reshuffle anything) and a
server's death moves exactly the slots it held to the remaining servers.
"""
from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class Server:
    member_id: str
    address: str
    capacity: int
    capabilities: tuple[str, ...] = ()


@dataclass(frozen=True)
class Actor:
    member_id: str
    wanted: int
    capabilities: tuple[str, ...] = ()


def _compatible(actor: Actor, server: Server) -> bool:
    return not actor.capabilities or not server.capabilities or bool(set(actor.capabilities) & set(server.capabilities))


def assign(actors: list[Actor], servers: list[Server]) -> dict[str, list[tuple[Server, int]]]:
    """Map actor id -> [(server, slots)]. Each slot goes to the compatible server with the lowest
    load after taking it (load = slots assigned / capacity); ties go to the smaller member id.
    Oversubscription is allowed (load > 1) so actors always get their slots while any server lives."""
    servers = sorted((s for s in servers if s.capacity > 0), key=lambda s: s.member_id)
    load = {s.member_id: 0 for s in servers}
    result: dict[str, list[tuple[Server, int]]] = {}
    for actor in sorted(actors, key=lambda a: a.member_id):
        mine: dict[str, int] = {}
        candidates = [s for s in servers if _compatible(actor, s)]
        for _ in range(actor.wanted if candidates else 0):
            best = min(candidates, key=lambda s: ((load[s.member_id] + 1) / s.capacity, s.member_id))
            load[best.member_id] += 1
            mine[best.member_id] = mine.get(best.member_id, 0) + 1
        by_id = {s.member_id: s for s in candidates}
        result[actor.member_id] = [(by_id[sid], n) for sid, n in sorted(mine.items())]
    return result


def fingerprint(assignment: dict[str, list[tuple[Server, int]]]) -> str:
    """Stable text form, to notice when an assignment changed."""
    return json.dumps({a: [(s.member_id, n) for s, n in slots] for a, slots in sorted(assignment.items())}, sort_keys=True)
