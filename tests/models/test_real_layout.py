"""A directory laid out like the real Qwen2.5-VL-3B-Instruct (transformers-4 era files) loads the same way."""
import json
import shutil

import numpy as np

from atlasrl.models.chat import encode_prompt, user
from atlasrl.models.load import load_policy
from atlasrl.models.logprobs import Sample, sample_logprobs


def test_hub_style_qwen25_vl_dir(vl_policy, frames, tmp_path):
    d = tmp_path / "Qwen2.5-VL-like"
    shutil.copytree(vl_policy.path, d)
    cfg = json.loads((d / "config.json").read_text())
    text = cfg.pop("text_config")
    rope = text.pop("rope_parameters")
    flat = {**{k: v for k, v in text.items() if k not in ("model_type", "layer_types", "dtype")}, **cfg}
    flat["rope_scaling"] = {"type": "mrope", "mrope_section": rope["mrope_section"]}
    flat["rope_theta"] = rope["rope_theta"]
    (d / "config.json").write_text(json.dumps(flat))            # flat text keys, as on the Hub
    pre = json.loads((d / "preprocessor_config.json").read_text())
    size = pre.pop("size")
    pre.update(min_pixels=size["shortest_edge"], max_pixels=size["longest_edge"])
    (d / "preprocessor_config.json").write_text(json.dumps(pre))
    template = (d / "chat_template.jinja").read_text()
    (d / "chat_template.jinja").unlink()
    (d / "chat_template.json").write_text(json.dumps({"chat_template": template}))

    hub = load_policy(d)
    assert hub.tokenizer.chat_template == template
    assert hub.spatial_merge_size == 2 and hub.vocab_size == vl_policy.vocab_size
    a = encode_prompt(hub, [user("Where?", images=1)], frames[:1])
    b = encode_prompt(vl_policy, [user("Where?", images=1)], frames[:1])
    assert a.input_ids == b.input_ids and np.array_equal(a.image_grid_thw, b.image_grid_thw)
    s = [Sample(a.input_ids, [5, 6, hub.eos_token_ids[0]], frames[:1])]
    np.testing.assert_allclose(sample_logprobs(hub, s), sample_logprobs(vl_policy, s), atol=1e-6)
