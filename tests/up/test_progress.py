"""Learning curves from cumulative counters: windows, recent success, steps to a target."""
import math

from atlasrl.up.progress import Sample, curve, recent_success, steps_to_reach


def s(t, steps, episodes, successes=None, **gauges):
    counters = {"actor.env_steps": steps, "actor.episodes": episodes, "envserver.env_steps": steps}
    if successes is not None:
        counters["actor.successes"] = successes
    return Sample(t, counters, {f"actor.{k}": v for k, v in gauges.items()})


def test_windows_of_at_least_min_episodes():
    samples = [s(0, 0, 0, 0), s(1, 100, 10, 1), s(2, 200, 20, 5), s(3, 300, 40, 19), s(4, 400, 44, 23)]
    points = curve(samples, min_episodes=16)
    assert [(p.env_steps, p.success_rate) for p in points] == [(200, 0.25), (300, 0.7)]
    assert steps_to_reach(points, 0.6) == 300 and steps_to_reach(points, 0.9) is None


def test_recent_success_and_gauge_fallback():
    samples = [s(0, 0, 0, 0), s(1, 10, 50, 10), s(2, 20, 100, 60)]
    assert recent_success(samples, 40) == (50 / 50, 50)
    assert recent_success(samples, 80) == (60 / 100, 100)
    no_counter = [s(0, 0, 0), s(1, 10, 30, success_rate=0.4)]
    assert recent_success(no_counter, 16) == (0.4, 30)
    rate, n = recent_success(samples[:1], 16)
    assert math.isnan(rate) and n == 0


def test_gauges_carried_forward_after_members_stop():
    from types import SimpleNamespace

    from atlasrl.up.progress import from_status

    hist = [SimpleNamespace(time=0, counters={"actor.episodes": 0}, gauges={"actor.success_rate": 0.1}),
            SimpleNamespace(time=1, counters={"actor.episodes": 70}, gauges={"actor.success_rate": 0.5, "learner.loss": 1.0}),
            SimpleNamespace(time=2, counters={"actor.episodes": 70}, gauges={"learner.loss": 0.5})]  # actors stopped
    samples = from_status(hist)
    assert samples[-1].gauges == {"actor.success_rate": 0.5, "learner.loss": 0.5}
    assert recent_success(samples, 64) == (0.5, 70)


def test_summary_names_how_the_held_out_episodes_failed():
    from atlasrl.cli.up import summary_text

    report = {"success_rate": 0.875, "ci_low": 0.8, "ci_high": 0.92, "episodes": 128,
              "causes": {"success": 112, "hole": 15, "timeout": 1}}
    text = summary_text({"run_dir": "r", "eval_before": {"success_rate": 0.08, "episodes": 128}, "eval_after": report})
    assert "0.88 [0.80, 0.92] over 128 episodes (failed: hole 15, timeout 1)" in text
    assert "before training (initial random-weights policy): 0.08 [0.00, 1.00] over 128 episodes\n" in text + "\n"
