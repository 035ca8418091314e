"""`tunesmith run ./my_recipe.py --config ...`: a recipe copied with `tunesmith cp` runs."""

from __future__ import annotations

from click.testing import CliRunner

from tunesmith.cli import cli

from .helpers import losses


def test_copied_recipe_runs(make_config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    copied = runner.invoke(cli, ["cp", "full_finetune_single_device", "my_recipe.py"])
    assert copied.exit_code == 0, copied.output
    config, output_dir = make_config("copied", max_steps_per_epoch=1)
    result = runner.invoke(cli, ["run", "./my_recipe.py", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert list(losses(output_dir)) == [1]
    helped = runner.invoke(cli, ["run", "./my_recipe.py", "--help"])
    assert (
        "Config keys of my_recipe.py" in helped.output
        and "gradient_accumulation_steps" in helped.output
    )
    missing = runner.invoke(cli, ["run", "./nope.py", "--config", str(config)])
    assert missing.exit_code != 0 and "recipe file nope.py does not exist" in missing.output
