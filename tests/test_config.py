"""Method configs: one default each, presets, registries, and the CLI flags derived from them."""

from __future__ import annotations

import dataclasses

import pytest

from attnprompt.attribution.configs import METHODS, ClipConfig, VlmConfig
from attnprompt.checks import parse_layers
from attnprompt.cli import build_parser, main
from attnprompt.errors import InputError
from attnprompt.presets import cli_parameters
from attnprompt.registry import Registry


@pytest.mark.parametrize("cls", [ClipConfig, VlmConfig])
def test_the_default_preset_is_the_fields_defaults(cls):
    """A default is written once: the default preset changes nothing, the others name only what differs."""
    assert cls.PRESETS[cls.DEFAULT_PRESET] == {}
    default = cls.from_preset()
    for f in dataclasses.fields(cls):
        if f.name != "preset":
            assert getattr(default, f.name) == f.default, f.name
    for name, changes in cls.PRESETS.items():
        assert set(changes) <= set(cls.parameter_names()), name
        assert all(getattr(cls.from_preset(name), k) == v for k, v in changes.items())


def test_every_method_parameter_is_a_cli_flag_with_its_defaults():
    parser = build_parser()
    annotate = parser._subparsers._group_actions[0].choices["annotate"]
    ask = parser._subparsers._group_actions[0].choices["ask"]
    # annotate has no answer budget of its own: api-vlm's --max-new-tokens is the map's (dest map_max_new_tokens)
    flags = {a.dest.removeprefix("map_"): a for a in annotate._actions}
    for method, cls in METHODS.configs().items():
        for f in dataclasses.fields(cls):
            if f.name == "preset":
                continue
            assert f.name in flags, f.name
            assert flags[f.name].default is None  # unset flags are not passed on
            if f.default is not None:  # a None default is described in words ("the deepest of --layers")
                assert f"{method} {f.default}" in flags[f.name].help
    # in `ask`, the answer's budget is ask's own; api-vlm's generation length is --map-max-new-tokens
    ask_flags = {a.dest: a for a in ask._actions}
    assert ask_flags["max_new_tokens"].default == 128 and "map_max_new_tokens" in ask_flags
    kernel = next(p for p in cli_parameters(METHODS.configs()) if p.name == "kernel")
    assert kernel.parse is int and kernel.defaults == {"api-clip": 3, "api-vlm": 3, "carve": 1}


def test_a_method_flag_reaches_the_config_and_a_foreign_one_is_refused(tmp_path, capsys):
    from PIL import Image

    Image.new("RGB", (40, 30), "white").save(tmp_path / "a.png")
    args = ["annotate", str(tmp_path / "a.png"), "the circle", "-o", str(tmp_path / "o.png"), "--model", "shapes"]
    assert main(args + ["--no-renormalize"]) == 2
    assert ("error: api-clip has no parameter renormalize (renormalize is a parameter of api-vlm); valid parameters: "
            in capsys.readouterr().err)
    assert main(args + ["--kernel", "5", "--layers", "-3:"]) == 0  # a slice that starts with "-" is a value
    assert main(args + ["--layers", "-1,-2", "--comp-layer", "-1"]) == 0


def test_layer_specs_resolve_the_same_way_everywhere():
    assert parse_layers("0.5", 4, allow_fraction=True) == parse_layers(0.5, 4, allow_fraction=True) == (2,)
    assert parse_layers("-1", 4) == parse_layers(3, 4) == (3,)
    assert parse_layers([0, -1], 4) == parse_layers("0,3", 4) == (0, 3)
    with pytest.raises(InputError, match="fractions are not accepted here"):
        parse_layers(0.5, 4)
    with pytest.raises(InputError, match="'0.5' is not an integer"):
        parse_layers("0.5", 4)
    with pytest.raises(InputError, match="index 4 is out of range; the model has 4 blocks"):
        parse_layers("4", 4, allow_fraction=True)


def test_registries_are_lazy_and_loud():
    assert {"api-clip", "api-vlm", "carve"} <= set(METHODS.names()) and "api-clip" in METHODS
    with pytest.raises(InputError, match="unknown method 'gradcam'; valid methods: api-clip, api-vlm, carve"):
        METHODS.get("gradcam")
    r = Registry("widget", {})
    r.register("mine", "attnprompt.render:colorize")
    assert r.get("mine").__name__ == "colorize"
    with pytest.raises(InputError, match="must look like 'package.module:Name'"):
        r.register("bad", "attnprompt.render.colorize")
    with pytest.raises(ModuleNotFoundError):
        Registry("widget", {"x": "no_such_module:X"}).get("x")
