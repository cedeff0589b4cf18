"""Tiny model build: real architectures, HF layout, determinism by seed, loading."""
import json

import pytest
import torch

from atlasrl.models.load import load_policy
from atlasrl.models.tiny import TinySpec, build_tiny, tiny_model_path
from atlasrl.models.tokenizer import ACTION_WORDS, SPECIAL_TOKENS

SMALL = dict(hidden=64, layers=1, heads=2, kv_heads=1, vision_hidden=32, vision_layers=1)


@pytest.mark.parametrize("arch", ["qwen2", "qwen2.5-vl"])
def test_same_seed_gives_byte_identical_files(tmp_path, arch):
    a, b, c = (build_tiny(TinySpec(arch=arch, seed=s, **SMALL), tmp_path / n) for n, s in [("a", 3), ("b", 3), ("c", 4)])
    for name in ["model.safetensors", "config.json", "tokenizer.json"]:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "model.safetensors").read_bytes() != (c / "model.safetensors").read_bytes()


def test_text_model_layout_and_load(text_policy):
    cfg = json.loads((text_policy.path / "config.json").read_text())
    assert cfg["architectures"] == ["Qwen2ForCausalLM"]
    assert type(text_policy.model).__name__ == "Qwen2ForCausalLM"
    assert not text_policy.is_vl and text_policy.image_processor is None
    n_params = sum(p.numel() for p in text_policy.model.parameters())
    assert 1e5 < n_params < 1e7
    tok = text_policy.tokenizer
    assert tok.convert_ids_to_tokens(text_policy.eos_token_ids[0]) == "<|im_end|>"
    assert max(tok.convert_tokens_to_ids(SPECIAL_TOKENS)) < text_policy.model.config.vocab_size


def test_vl_model_layout_and_load(vl_policy):
    path = vl_policy.path
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["architectures"] == ["Qwen2_5_VLForConditionalGeneration"]
    pre = json.loads((path / "preprocessor_config.json").read_text())
    assert pre["processor_class"] == "Qwen2_5_VLProcessor" and pre["patch_size"] == 14
    assert vl_policy.is_vl and type(vl_policy.image_processor).__name__ == "Qwen2VLImageProcessorPil"
    assert vl_policy.tokenizer.convert_ids_to_tokens(vl_policy.image_token_id) == "<|image_pad|>"
    section = cfg["text_config"]["rope_parameters"]["mrope_section"]
    assert sum(section) * 2 == cfg["text_config"]["hidden_size"] // cfg["text_config"]["num_attention_heads"]


@pytest.mark.parametrize("word", ACTION_WORDS)
def test_action_words_are_single_tokens(text_policy, word):
    tok = text_policy.tokenizer
    assert len(tok.encode(word, add_special_tokens=False)) == 1
    assert len(tok.encode(" " + word, add_special_tokens=False)) == 1


def test_chat_template_is_qwen_style(text_policy):
    text = text_policy.tokenizer.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "go"}]}],
        tokenize=False, add_generation_prompt=True)
    assert text == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                    "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>go<|im_end|>\n"
                    "<|im_start|>assistant\n")


def test_cache_reuses_a_built_model(tmp_path, monkeypatch):
    monkeypatch.setenv("ATLASRL_CACHE", str(tmp_path))
    p1 = tiny_model_path("qwen2", seed=1, **{k: v for k, v in SMALL.items() if not k.startswith("vision")})
    mtime = (p1 / "model.safetensors").stat().st_mtime_ns
    p2 = tiny_model_path("qwen2", seed=1, **{k: v for k, v in SMALL.items() if not k.startswith("vision")})
    assert p1 == p2 and (p2 / "model.safetensors").stat().st_mtime_ns == mtime
    assert p1.parent == tmp_path / "models" and p1.name.startswith("qwen2-1-")
    assert not [p for p in p1.parent.iterdir() if p.name.startswith(".")]   # no leftover temp dirs


def test_bad_specs_are_rejected():
    with pytest.raises(ValueError, match="arch"):
        TinySpec(arch="llama")
    with pytest.raises(ValueError, match="head"):
        TinySpec(hidden=100, heads=3)


def test_load_rejects_a_non_model_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config.json"):
        load_policy(tmp_path)


def test_loaded_model_runs_forward(text_policy):
    ids = torch.tensor([text_policy.tokenizer.encode("Up Down", add_special_tokens=False)])
    logits = text_policy.model(input_ids=ids).logits
    assert logits.shape == (1, ids.shape[1], text_policy.model.config.vocab_size)
    assert torch.isfinite(logits).all()
