"""Wire splicing equals protobuf's own encoding; info values become JSON; config validation."""
from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from atlasrl.envserver.base import Entity, StepOutput
from atlasrl.envserver.config import EnvServerConfig
from atlasrl.envserver.convert import jsonable, observation_to_proto, reset_response, step_response
from atlasrl.v1 import common_pb2, env_pb2


def _obs(step: int) -> env_pb2.Observation:
    out = StepOutput(images=[np.full((16, 16, 3), step, np.uint8)], text=f"ü step {step}", reward=-0.1 * step, terminated=step == 2,
                     info={"action_is_valid": True, "n": np.int64(3), "xs": np.arange(2)}, agent=(1, step),
                     entities=[Entity("goal", (3, 3)), Entity("object", (0, 1), (0.1, 0.2, 0.3), "cube")], step=step, layout_key="k")
    return observation_to_proto(out, ["main"])[0]


@pytest.mark.parametrize("request_id", [0, 1, 300, 2**40])
def test_spliced_step_response_equals_protobuf(request_id):
    # The third ended its episode and carries the automatic reset's observation (StepRequest.auto_reset).
    results = [(1, 0, "", _obs(1), None), (2**33, 5, "env handle 8589934592 is not open ✗", None, None), (127, 0, "", _obs(2), _obs(0))]
    spliced = step_response(request_id, [(h, c, m, o.SerializeToString() if o else b"", r.SerializeToString() if r else None)
                                         for h, c, m, o, r in results])
    expected = env_pb2.EnvResponse(request_id=request_id, step=env_pb2.StepResponse(results=[
        env_pb2.StepResult(handle=h, status=common_pb2.Status(code=c, message=m) if c else None, observation=o, reset_observation=r)
        for h, c, m, o, r in results]))
    assert env_pb2.EnvResponse.FromString(spliced.SerializeToString()) == expected


def test_spliced_reset_response_and_empty_step():
    obs = _obs(0)
    got = env_pb2.EnvResponse.FromString(reset_response(9, obs.SerializeToString()).SerializeToString())
    assert got == env_pb2.EnvResponse(request_id=9, reset=env_pb2.ResetResponse(observation=obs))
    got = env_pb2.EnvResponse.FromString(step_response(3, []).SerializeToString())
    assert got.WhichOneof("payload") == "step" and not got.step.results


def test_observation_fields():
    obs = _obs(2)
    assert obs.images[0].name == "main" and obs.terminated and obs.agent.col == 2
    assert obs.info["n"] == 3 and list(obs.info["xs"]) == [0, 1] and obs.info["action_is_valid"] is True
    assert [e.kind for e in obs.entities] == ["goal", "object"] and list(obs.entities[1].position) == pytest.approx([0.1, 0.2, 0.3])


def test_jsonable():
    assert jsonable({"a": np.float32(0.5), "b": (1, 2), "c": math.nan, "d": {1: None}, "e": object}) == {
        "a": 0.5, "b": [1.0, 2.0], "c": "nan", "d": {"1": None}, "e": str(object)}


def test_config_validation():
    cfg = EnvServerConfig(envs="sokoban, maniskill", devices="0,1")
    assert cfg.envs == ["sokoban", "maniskill"] and cfg.workers is None and cfg.worker_count() == 2
    assert cfg.allows("maniskill:PickCube-v1") and cfg.allows("sokoban") and not cfg.allows("frozenlake")
    assert EnvServerConfig().allows("anything")
    with pytest.raises(ValidationError, match="fewer than the 3 devices"):
        EnvServerConfig(workers=2, devices=["0", "1", "2"])
    with pytest.raises(ValidationError):
        EnvServerConfig(max_envs=0)
    assert EnvServerConfig(port=0, max_message_bytes=4096).server_config().max_message_bytes == 4096


def test_env_names_are_checked_against_ids_and_prefixes():
    from atlasrl.envserver import registry
    from atlasrl.envserver.server import check_env_names

    assert "maniskill" in registry.prefixes()      # served as maniskill:<Task>, whether or not mani_skill lists tasks
    check_env_names(EnvServerConfig(envs=["frozenlake", "maniskill"]))
    with pytest.raises(ValueError, match=r"unknown env ids \['nosuch'\].*maniskill"):
        check_env_names(EnvServerConfig(envs=["frozenlake", "nosuch"]))
