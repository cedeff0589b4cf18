"""One definition per setting: each role's CLI is derived from its config model, and the run config is made of them.

A role started alone (no flags) resolves exactly the defaults `atlasrl config show --preset none` prints for
its section; --config, --set and the flags layer in that order; unknown or bad keys fail naming the key.
"""
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from atlasrl.cli.main import app, build
from atlasrl.config import load_config
from atlasrl.config.loader import presets
from atlasrl.config.schema import ROLE_MODELS

ROOT = Path(__file__).resolve().parents[1]
ROLES = list(ROLE_MODELS)
build()


def cli(*args: str):
    return CliRunner().invoke(app, list(args), terminal_width=200)


def resolved(*args: str) -> dict:
    r = cli(*args, "--print-config")
    assert r.exit_code == 0, r.output
    return yaml.safe_load(r.output)


def without_random_ids(d: dict) -> dict:
    return {k: v for k, v in d.items() if k != "actor_id"}   # a fresh random id per actor, by design


@pytest.mark.parametrize("role", ROLES)
def test_a_role_alone_gets_the_defaults_config_show_prints(role):
    shown = cli("config", "show", "--preset", "none", "--role", role)
    assert shown.exit_code == 0, shown.output
    assert without_random_ids(resolved(role)) == without_random_ids(yaml.safe_load(shown.output))


def test_the_run_config_sections_are_the_role_models():
    cfg = load_config(preset="none")
    for role, model in ROLE_MODELS.items():
        assert type(getattr(cfg, role)) is model
        assert without_random_ids(getattr(cfg, role).model_dump()) == without_random_ids(model().model_dump())


@pytest.mark.parametrize("role", ROLES)
def test_every_scalar_field_is_a_flag_with_its_doc_as_help(role):
    import typer

    from atlasrl.cli.from_model import flag_type

    group = typer.main.get_command(app)
    command = group.commands[role]
    params = {opt: p for p in command.params for opt in [*p.opts, *p.secondary_opts]}
    for name, info in ROLE_MODELS[role].model_fields.items():
        if flag_type(info.annotation) is None:
            continue                                     # nested sections: --set section.key=value
        flag = next((f for f in ("--" + name.replace("_", "-"), "--" + name.replace("_", "-").removeprefix("use-"))
                     if f in params), None)
        assert flag is not None, (role, name)
        assert " ".join((info.description or "").split()) in params[flag].help, (role, name)


def test_precedence_defaults_file_set_flags(tmp_path):
    f = tmp_path / "learner.yaml"
    f.write_text("lr: 0.001\nbatch_episodes: 32\nalgo: ppo\n")
    got = resolved("learner", "--config", str(f), "--set", "batch_episodes=64", "--algo", "gigpo")
    assert (got["lr"], got["batch_episodes"], got["algo"], got["kl_coef"]) == (0.001, 64, "gigpo", 0.0)
    # a flag left out does not override the file (the old CLIs' flag defaults did)
    assert resolved("learner", "--config", str(f))["algo"] == "ppo"
    nested = resolved("memory", "--set", "atlas.blend_rate=0.25", "--port", "0", "--gamma", "0.9")
    assert (nested["atlas"]["blend_rate"], nested["server"]["port"], nested["shaping"]["gamma"]) == (0.25, 0, 0.9)
    env = resolved("actor", "--env-config", "size=6", "--no-image", "--env", "sokoban")
    assert env["env_config"] == {"text_mode": "relative", "max_actions_per_turn": "1", "size": "6"}   # merged
    assert env["use_image"] is False and env["env_id"] == "sokoban"


@pytest.mark.parametrize("args,words", [
    (["learner", "--set", "lrr=0.1"], "lrr: Extra inputs are not permitted"),
    (["memory", "--set", "atlas.blend=0.1"], "atlas.blend: Extra inputs are not permitted"),
    (["envserver", "--max-envs", "0"], "max_envs: Input should be greater than or equal to 1"),
    (["actor", "--action-mode", "typing"], "action_mode: Input should be 'free' or 'choice'"),
    (["coordinator", "--set", "lease_ttl_s"], "expected key=value"),
])
def test_bad_keys_and_values_fail_naming_the_key(args, words):
    r = cli(*args, "--print-config")
    assert r.exit_code == 2 and words in " ".join(r.output.replace("│", " ").split()), r.output


def test_unknown_key_in_a_config_file_names_it(tmp_path):
    f = tmp_path / "envserver.yaml"
    f.write_text("max_envs: 8\nworker: 2\n")
    r = cli("envserver", "--config", str(f), "--print-config")
    assert r.exit_code == 2 and "worker: Extra inputs are not permitted" in r.output


@pytest.mark.parametrize("preset", presets())
def test_shipped_presets_validate(preset):
    cfg = load_config(preset=preset)
    data = yaml.safe_load((ROOT / "atlasrl" / "config" / "presets" / f"{preset}.yaml").read_text())
    dumped = cfg.model_dump(mode="json")   # as a file writes it (paths as strings)
    for section, values in data.items():   # every key of the preset took effect (none is silently ignored)
        for key, value in values.items():
            _took_effect(dumped[section][key], value, (preset, section, key))
    _no_idle_schedule(data, dumped, (preset,))


# A schedule's span does nothing while its end value is None (the start value holds throughout), so a preset that
# sets the span alone silently trains without the schedule it describes (miniworld-nav did, with entropy).
SCHEDULE_ENDS = {"lr_decay_updates": "lr_final", "entropy_decay_updates": "entropy_coef_final",
                 "noise_decay_updates": "noise_std_final"}


def _no_idle_schedule(data: dict, dumped: dict, where: tuple) -> None:
    for key, value in data.items():
        if isinstance(value, dict) and isinstance(dumped.get(key), dict):
            _no_idle_schedule(value, dumped[key], (*where, key))
        elif key in SCHEDULE_ENDS:
            assert dumped[SCHEDULE_ENDS[key]] is not None, (*where, key, f"needs {SCHEDULE_ENDS[key]}")


def _took_effect(dumped, value, where) -> None:
    """A nested model (e.g. actor.action_head) is compared key by key: defaults fill the keys a preset leaves out."""
    if isinstance(value, dict) and isinstance(dumped, dict) and not all(isinstance(v, str) for v in value.values()):
        for k, v in value.items():
            _took_effect(dumped[k], v, (*where, k))
    else:
        assert dumped == value, where


def test_up_uses_the_preset_unless_told_otherwise(tmp_path):
    code = ("import sys; from atlasrl.cli.main import build; build()(prog_name='atlasrl')")
    r = subprocess.run([sys.executable, "-c", code, "config", "show", "--role", "learner"], capture_output=True, text=True,
                       cwd=ROOT)
    assert r.returncode == 0 and yaml.safe_load(r.stdout)["algo"] == "gigpo", r.stderr
    assert load_config(preset="none").learner.algo == "grpo"


def test_an_actor_renices_itself_before_it_starts(tmp_path):
    """actor.nice is the actor's own setting now (it was `up`'s `nice -n` wrapper): applied first thing."""
    code = ("import os, sys, atlasrl.actors.actor as a\n"
            "async def fake(cfg, server_cfg, max_episodes=None): print('NICE', os.nice(0) - base)\n"
            "base = os.nice(0); a.run_actor = fake\n"
            "from atlasrl.cli.main import build; build()(prog_name='atlasrl')")
    r = subprocess.run([sys.executable, "-c", code, "actor", "--nice", "3", "--envs", "127.0.0.1:1"], capture_output=True,
                       text=True, cwd=ROOT, start_new_session=True)   # as `up` starts it: its autogroup is its own
    assert r.returncode == 0 and "NICE 3" in r.stdout, r.stderr
