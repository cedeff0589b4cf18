"""Potential-based shaping telescopes: sum_t gamma^t F_t = gamma^T Phi(s_T) - Phi(s_0) (Phi(s_T) = 0 if terminal)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atlasrl.clients.memory import MemoryClient, episode_record, trajectory_transitions, transition
from atlasrl.memory.atlas import Atlas
from atlasrl.memory.config import MemoryConfig, ShapingConfig
from atlasrl.memory.server import MemoryServer
from atlasrl.memory.shaping import layout_view, potential, shaping_terms
from atlasrl.rpc import ServerConfig


@st.composite
def maps_and_paths(draw):
    rows, cols = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    n = draw(st.integers(2, 30))
    cells = np.stack([rng.integers(0, rows, n), rng.integers(0, cols, n)], 1)
    return rng.random((rows, cols)), rng.random((rows, cols)), cells


@settings(max_examples=200, deadline=None)
@given(maps_and_paths(), st.floats(0.5, 1.0), st.floats(0, 3), st.floats(0, 3), st.booleans())
def test_telescoping(data, gamma, lam_a, lam_d, terminal):
    danger, affinity, cells = data
    phi = lam_a * affinity - lam_d * danger
    T = len(cells) - 1
    term = np.zeros(T, bool)
    term[-1] = terminal
    f, phi_s, _phi_n = shaping_terms(phi, cells[:-1], cells[1:], term, gamma)
    discounted = float(np.sum(gamma ** np.arange(T) * f))
    end = 0.0 if terminal else phi[tuple(cells[-1])]
    assert discounted == pytest.approx(gamma**T * end - phi[tuple(cells[0])], abs=1e-9)
    np.testing.assert_allclose(phi_s, phi[cells[:-1, 0], cells[:-1, 1]])


def test_potential_and_blend_weights():
    layout, family = Atlas(2, 2), Atlas(3, 3)
    layout.episodes, layout.danger[0, 0], layout.affinity[1, 1] = 10, 1.0, 0.5
    family.episodes, family.affinity[1, 1] = 5, 1.0  # the goal offset
    view = layout_view(layout, family, 2, 2, goal=(0, 1), trust_episodes=10)
    assert view.source == "blended"
    # w = 10 / (10 + 10); the family's goal affinity lands on (0,1)
    np.testing.assert_allclose(view.affinity, [[0, 0.5], [0, 0.25]])
    phi = potential(view, ShapingConfig(lambda_affinity=2.0, lambda_danger=3.0))
    np.testing.assert_allclose(phi, [[-1.5, 1.0], [0, 0.5]])
    assert layout_view(layout, family, 2, 2, goal=None, trust_episodes=10).source == "layout"
    assert layout_view(None, family, 2, 2, goal=(0, 1), trust_episodes=10).source == "family"
    assert layout_view(None, None, 2, 2, goal=None, trust_episodes=10).source == "empty"


async def test_served_shaping_telescopes_and_favours_the_goal():
    server = MemoryServer(MemoryConfig(server=ServerConfig(port=0)))
    await server.start()
    try:
        async with MemoryClient(server.address) as mem:
            win = [(0, 0), (1, 0), (2, 0), (3, 0), (3, 1), (3, 2), (3, 3)]
            fail = [(0, 0), (0, 1), (1, 1)]
            await mem.ingest([episode_record("g", "L", 4, 4, win, success=True, goal=(3, 3)),
                              episode_record("g", "L", 4, 4, fail, success=False, cause="hole", goal=(3, 3))])
            r = await mem.shape(trajectory_transitions("g", "L", win), gamma=0.9)
            f, phi0 = np.array(r.shaping), r.phi[0]
            assert r.gamma == pytest.approx(0.9)
            assert float(np.sum(0.9 ** np.arange(len(f)) * f)) == pytest.approx(-phi0, abs=1e-5)
            # stepping into the hole is penalised, stepping towards the goal rewarded
            into_hole = await mem.shape([transition("g", "L", (0, 1), (1, 1))])
            to_goal = await mem.shape([transition("g", "L", (3, 1), (3, 2))])
            assert into_hole.shaping[0] < 0 < to_goal.shaping[0]
    finally:
        await server.stop(0)


async def test_episode_shaper_matches_server_and_telescopes():
    server = MemoryServer(MemoryConfig(server=ServerConfig(port=0), shaping=ShapingConfig(lambda_danger=2.0, gamma=0.95)))
    await server.start()
    try:
        async with MemoryClient(server.address) as mem:
            path = [(0, 0), (0, 1), (1, 1)]
            await mem.ingest([episode_record("g", "L", 4, 4, path, success=False, cause="hole", goal=(3, 3)),
                              episode_record("g", "L", 4, 4, [(0, 0), (1, 0), (2, 0), (3, 0), (3, 1), (3, 2), (3, 3)],
                                             success=True, goal=(3, 3))])
            view = await mem.query("g", "L")
            shaper = view.shaper()
            assert shaper.gamma == pytest.approx(0.95)
            served = await mem.shape(trajectory_transitions("g", "L", path))
            local = [shaper(path[t], path[t + 1], terminal=t == len(path) - 2) for t in range(len(path) - 1)]
            np.testing.assert_allclose(local, served.shaping, atol=2e-3)  # same Phi up to the float16 maps on the wire
            assert sum(0.95**t * f for t, f in enumerate(local)) == pytest.approx(-shaper.potential(path[0]), abs=1e-7)
            with pytest.raises(ValueError, match="outside"):
                shaper((0, 0), (4, 0))
    finally:
        await server.stop(0)
