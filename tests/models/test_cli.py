"""`atlasrl model tiny|info` through the real CLI app."""
import json

from typer.testing import CliRunner

from atlasrl.cli.main import build


def test_model_tiny_builds_and_info_reads_it(tmp_path):
    app, runner = build(), CliRunner()
    out = tmp_path / "tiny-vl"
    res = runner.invoke(app, ["model", "tiny", "--arch", "qwen2.5-vl", "--out", str(out), "--seed", "5",
                              "--hidden", "64", "--layers", "1", "--heads", "2", "--kv-heads", "1"])
    assert res.exit_code == 0, res.output
    assert res.output.strip() == str(out)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["text_config"]["hidden_size"] == 64 and cfg["text_config"]["num_hidden_layers"] == 1
    assert json.loads((out / "atlasrl_tiny.json").read_text())["seed"] == 5
    res = runner.invoke(app, ["model", "info", str(out)])
    assert res.exit_code == 0, res.output
    assert "Qwen2_5_VLForConditionalGeneration" in res.output and "image token" in res.output


def test_model_tiny_rejects_bad_arguments(tmp_path):
    runner = CliRunner()
    res = runner.invoke(build(), ["model", "tiny", "--arch", "llama", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "arch must be one of" in res.output
    res = runner.invoke(build(), ["model", "info", str(tmp_path)])
    assert res.exit_code == 2 and "config.json" in res.output
