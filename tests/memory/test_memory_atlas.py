"""Atlas maths, skills, exemplars and embeddings on hand-built episodes (values worked out by hand)."""
import numpy as np
import pytest

from atlasrl.memory.atlas import Atlas, family_shape, project_family, to_offsets
from atlasrl.memory.config import AtlasConfig, ExemplarConfig, MemoryConfig, SkillConfig
from atlasrl.memory.embedding import area_downsample, embed
from atlasrl.memory.episode import Episode
from atlasrl.memory.exemplars import ExemplarBank
from atlasrl.memory.skills import family_skills, layout_skills
from atlasrl.memory.state import MemoryState

CFG = AtlasConfig(gamma_danger=0.5, gamma_affinity=0.5, prior_visits=1.0, blend_rate=0.5, normalisation="max")
HOLE, GOAL = (0, 2), (1, 2)


def ep(cells, success, cause="", goal=GOAL, eid="", **kw) -> Episode:
    return Episode(eid, "toy", "2x3", 2, 3, np.array(cells), success, cause or ("success" if success else "hole"), goal, **kw)


def test_danger_and_affinity_by_hand():
    atlas = Atlas(2, 3)
    atlas.add_episode(np.array([(0, 0), (0, 1), (0, 2)]), False, "hole", CFG)
    # F = w * gamma_d^(T-t) = [.25, .5, 1]; D^ = F / (N + 1) = [.125, .25, .5]; D = D^ / max (first episode: no EMA)
    np.testing.assert_allclose(atlas.danger, [[0.25, 0.5, 1.0], [0, 0, 0]], atol=1e-7)
    assert not atlas.affinity.any()
    atlas.add_episode(np.array([(0, 0), (1, 0), (1, 1), (1, 2)]), True, "success", CFG)
    # N(0,0) = 2 -> D^(0,0) = .25/3; max D^ = .5 -> D~(0,0) = 1/6; D = .5 * .25 + .5 * 1/6
    np.testing.assert_allclose(atlas.danger, [[0.125 + 1 / 12, 0.5, 1.0], [0, 0, 0]], atol=1e-6)
    # S = gamma_a^(T-t) = [.125, .25, .5, 1] on the path; A^ = S / (N + 1); A~ = A^ / .5; A = .5 * 0 + .5 * A~
    np.testing.assert_allclose(atlas.affinity, [[0.125 / 3, 0, 0], [0.125, 0.25, 0.5]], atol=1e-6)
    assert (atlas.episodes, atlas.successes, atlas.version) == (2, 1, 2)
    assert atlas.end_counts["hole"][HOLE] == 1 and atlas.end_counts["success"][GOAL] == 1
    np.testing.assert_array_equal(atlas.visits, [[2, 1, 1], [1, 1, 1]])


def test_cause_weights_and_revisits():
    cfg = AtlasConfig(gamma_danger=0.5, prior_visits=0.0, cause_weights={"timeout": 0.25}, normalisation="max")
    atlas = Atlas(1, 2)
    # the agent bumps a wall at (0,0) twice and times out at (0,1): masses .25*(.5^3 + .5^2 + .5) and .25*1
    atlas.add_episode(np.array([(0, 0), (0, 0), (0, 0), (0, 1)]), False, "timeout", cfg)
    f = 0.25 * (0.125 + 0.25 + 0.5)
    np.testing.assert_allclose(atlas.fail_mass, [[f, 0.25]])
    np.testing.assert_allclose(atlas.danger, [[(f / 3) / 0.25, 1.0]], atol=1e-6)


def test_bound_normalisation_keeps_absolute_rates():
    cfg = AtlasConfig(gamma_danger=0.5, gamma_affinity=0.5, prior_visits=1.0, cause_weights={"hole": 2.0, "timeout": 0.5},
                      other_cause_weight=1.0)
    atlas = Atlas(1, 3)
    atlas.add_episode(np.array([(0, 0), (0, 1)]), False, "hole", cfg)
    # F = 2 * [.5, 1]; D^ = F / 2 = [.5, 1]; w_max = 2 -> D = [.25, .5]  (a max-normalised map would say [.5, 1])
    np.testing.assert_allclose(atlas.danger, [[0.25, 0.5, 0]])
    atlas.add_episode(np.array([(0, 0), (0, 1), (0, 2)]), True, "success", cfg)
    # S = [.25, .5, 1]; A^ = S / (N + 1) = [.25/3, .5/3, .5]; A = .5 * 0 + .5 * A^
    np.testing.assert_allclose(atlas.affinity, [[0.125 / 3, 0.25 / 3, 0.25]], atol=1e-7)
    # danger: D^ = [1/3, 2/3, 0] / 2; D = .5 * [.25, .5, 0] + .5 * [1/6, 1/3, 0]
    np.testing.assert_allclose(atlas.danger, [[0.125 + 1 / 12, 0.25 + 1 / 6, 0]], atol=1e-7)


def test_goal_relative_offsets_projection_and_growth():
    assert family_shape(4, 5) == (7, 9)
    # centre of a 7x9 family grid is (3, 4): the goal itself
    np.testing.assert_array_equal(to_offsets(np.array([(2, 2), (0, 0)]), (2, 2), 7, 9), [(3, 4), (1, 2)])
    fam = np.zeros((7, 9), np.float32)
    fam[3, 3] = 0.8  # one cell left of the goal
    proj = project_family(fam, (1, 4), 4, 5)
    assert proj[1, 3] == pytest.approx(0.8) and proj.sum() == pytest.approx(0.8)
    assert project_family(fam, (0, 0), 4, 5).sum() == 0  # left of (0,0) is off the grid
    a = Atlas(3, 3)
    a.visits[1, 1] = 5
    a.grow(7, 5)
    assert a.visits.shape == (7, 5) and a.visits[3, 2] == 5  # the centre stays the centre


def test_state_updates_layout_and_family_and_versions():
    state = MemoryState(MemoryConfig(atlas=CFG))
    state.apply(ep([(0, 0), (0, 1), (0, 2)], False, eid="a"))
    state.apply(ep([(0, 0), (1, 0), (1, 1), (1, 2)], True, eid="b"))
    assert not state.apply(ep([(0, 0)], True, eid="b"))  # duplicate id: no change
    fam = state.families["toy"]
    assert (fam.rows, fam.cols) == (3, 5) and fam.episodes == 2
    # family atlas in offsets: the goal (1,2) sits at the centre (1,2) here, the hole one row up
    assert fam.danger[0, 2] == pytest.approx(1.0) and fam.affinity[1, 2] == pytest.approx(0.5)
    assert state.version == 2 and state.layouts[("toy", "2x3")].version == 2
    # a 3x4 layout of the same family grows the family atlas around the goal
    state.apply(Episode("c", "toy", "3x4", 3, 4, np.array([(2, 2), (2, 3)]), True, "success", (2, 3)))
    assert (fam.rows, fam.cols) == (5, 7) and fam.affinity[2, 3] > 0  # centre moved from (1,2) to (2,3)
    assert fam.danger[1, 3] > 0.5  # the old hole offset (-1, 0) kept its danger after growing


def test_skills_from_statistics():
    state = MemoryState(MemoryConfig(atlas=CFG))
    for i in range(4):
        state.apply(ep([(0, 0), (0, 1), (0, 2)], False, eid=f"f{i}", statics=[("hole", HOLE), ("goal", GOAL)]))
    for i in range(3):
        state.apply(ep([(0, 0), (1, 0), (1, 1), (1, 2)], True, eid=f"s{i}"))
    skills = {s.kind: s for s in state.skills("toy", "2x3")}
    avoid = skills["avoid_cells"]
    assert avoid.text == "cell (0,2) ended 100% of 4 visits in a hole: avoid it"
    assert (avoid.support, avoid.cells) == (4, [HOLE])
    corridor = skills["success_corridor"]
    assert corridor.support == 3 and set(corridor.cells) == {(0, 0), (1, 0), (1, 1)}
    assert "of 3 successes" in corridor.text and (1, 2) not in corridor.cells  # the goal itself is not advice
    assert skills["outcome_summary"].text == "in this layout, 43% of 7 episodes succeeded; failures: hole 100%"
    assert skills["family_summary"].text.startswith("across toy layouts, 43% of 7")
    assert "goal_relative" not in skills  # one layout: its own rules in offsets would claim too much
    # a second layout with its hole at the same place relative to its goal makes the rule transferable
    for i in range(3):
        state.apply(Episode(f"m{i}", "toy", "3x3", 3, 3, np.array([(1, 0), (1, 1)]), False, "hole", (2, 1)))
    rule = {s.kind: s for s in state.skills("toy", "2x3")}["goal_relative"]
    assert rule.text == "offset (-1,+0) from the goal (over 2 layouts) ended 100% of 7 visits in a hole: avoid it"
    assert rule.cells == [(-1, 0)] and rule.support == 7
    # cached by version, regenerated when an atlas changes
    assert state.skills("toy", "2x3") is state.skills("toy", "2x3")
    state.apply(ep([(0, 0), (0, 1), (0, 2)], False, eid="f9"))
    assert "of 5 visits" in {s.kind: s for s in state.skills("toy", "2x3")}["avoid_cells"].text


def test_box_dead_end_skill():
    atlas = Atlas(4, 4)
    atlas.statics = {"target": [(2, 2)]}
    cfg = SkillConfig(min_support=2)
    for _ in range(3):
        atlas.add_episode(np.array([(1, 1), (1, 2)]), False, "deadlock", CFG, entity_ends=[("box", (0, 3))])
    atlas.add_episode(np.array([(1, 1), (2, 1)]), True, "success", CFG, entity_ends=[("box", (2, 2))])
    for _ in range(2):
        atlas.add_episode(np.array([(1, 1), (2, 1)]), False, "deadlock", CFG, entity_ends=[("box", (2, 2))])
    for _ in range(4):  # the box never moved before these timeouts: no rule about its cell
        atlas.add_episode(np.array([(1, 1), (1, 1)]), False, "timeout", CFG, entity_ends=[("box", (1, 0))])
    dead = [s for s in layout_skills(atlas, cfg) if s.kind == "entity_dead_end"]
    assert [s.text for s in dead] == ["a box left at (0,3), which is not a target, ended 3 episodes in a deadlock "
                                      "and never led to success: do not push it there"]
    assert family_skills("toy", Atlas(3, 3), cfg, layouts=2) == []


def _frame(seed: int, base=None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.zeros((48, 48, 3), np.uint8) if base is None else base.copy()
    r, c = rng.integers(0, 4, 2)
    img[r * 12:(r + 1) * 12, c * 12:(c + 1) * 12] = rng.integers(0, 255, 3)
    return img


def test_embedding_is_unit_and_separates_frames():
    a, b = _frame(1), _frame(2)
    ea, eb = embed(a), embed(b)
    assert np.linalg.norm(ea) == pytest.approx(1.0, abs=1e-5)
    assert float(ea @ embed(a.copy())) == pytest.approx(1.0, abs=1e-5)
    assert float(ea @ eb) < 0.95
    np.testing.assert_allclose(area_downsample(np.full((10, 7, 3), 9, np.uint8), 3), 9)


def test_exemplar_eviction_keeps_diverse_frames():
    bank = ExemplarBank(ExemplarConfig(capacity_per_outcome=3))
    frames = [_frame(s) for s in (10, 20, 30)]
    for i, f in enumerate(frames):
        assert bank.add("toy", bank.make(f, caption=f"f{i}", outcome="failure", cause="hole", layout_key="L", episode_id=str(i)))
    twin = frames[1].copy()
    twin[0, 0] = (1, 1, 1)  # nearly identical to f1
    bank.add("toy", bank.make(twin, caption="twin", outcome="failure", cause="hole", layout_key="L", episode_id="t"))
    kept = sorted(e.caption for e in bank.sets[("toy", "failure")])
    assert kept == ["f0", "f2", "twin"]  # the older of the redundant pair went
    hits = bank.top_k("toy", frames[2], 2)
    assert hits[0][0].caption == "f2" and hits[0][1] == pytest.approx(1.0, abs=1e-5)
    assert [e.caption for e, _ in bank.top_k("toy", None, 2)] == ["twin", "f2"]
    copy = bank.make(frames[2].copy(), caption="copy", outcome="success", cause="success", layout_key="L", episode_id="c")
    bank.add("toy", copy)
    got = [e.caption for e, _ in bank.top_k("toy", frames[2], 2)]
    assert got[0] in {"f2", "copy"} and got[1] == "twin"  # f2 and its copy are one frame: only one is returned
    assert bank.remove("toy") == 4 and bank.count() == 0
