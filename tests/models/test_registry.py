"""The model registry: create by name, list by task, YAML presets, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from visionssm.errors import InputError
from visionssm.models import VMamba, build_from_config, create, list_models, load_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs" / "models").glob("*.yaml"))


def test_create_and_list():
    assert "vmamba" in list_models() and "vmamba" in list_models(task="backbone")
    assert "vmamba" not in list_models(task="segmentation")
    model = create("vmamba", dims=8, depths=[1, 1], num_classes=3, d_state=1, ssm_ratio=1.0)
    assert isinstance(model, VMamba)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)


def test_unknown_names_are_input_errors():
    with pytest.raises(InputError, match="unknown model 'nope'"):
        create("nope")
    with pytest.raises(InputError, match="unknown task"):
        list_models(task="painting")


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_preset_builds(path):
    with torch.device("meta"):  # shapes and parameter counts only: full-size presets build in a blink
        model = load_config(path)
    assert isinstance(model, torch.nn.Module) and sum(p.numel() for p in model.parameters()) > 0


def test_config_may_only_name_registered_classes(tmp_path):
    bad = tmp_path / "evil.yaml"
    bad.write_text("class_path: os.system\ninit_args: {command: 'echo hi'}\n")
    with pytest.raises(InputError, match=f"{bad}: class_path 'os.system' is not a registered visionssm model"):
        load_config(bad)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("class_path: [unclosed", "not valid YAML"),
        ("init_args: {}", "expected a mapping with 'class_path'"),
        ("class_path: visionssm.models.VMamba\nmodel: 1", "unknown key"),
        ("class_path: visionssm.models.VMamba\ninit_args: {colour: red}", "does not accept these init_args"),
    ],
)
def test_bad_config_files_name_the_file(tmp_path, text, message):
    path = tmp_path / "model.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=message) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(InputError, match="cannot read the model config"):
        load_config(tmp_path / "missing.yaml")


def test_build_from_mapping_with_full_module_path():
    model = build_from_config(
        {"class_path": "visionssm.models.backbones.vmamba.VMamba", "init_args": {"dims": 8, "depths": [1]}}
    )
    assert isinstance(model, VMamba)
