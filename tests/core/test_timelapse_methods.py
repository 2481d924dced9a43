"""The time-lapse asks the method catalogue: the maps it shows are the catalogue's methods that
read only the stored attention, a frame's attention rows are an analysis's attention for the
dispatcher, and what a time-lapse cannot show is refused in one line."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from vitexplorer.cli.timelapse import timelapse_parser
from vitexplorer.core.explain.maps import explanation_map
from vitexplorer.core.explain.method import MethodOptions, catalogue, method_names
from vitexplorer.core.training.timelapse import TimeLapse, timelapse_from
from vitexplorer.core.training.timelapse_frames import (
    Frame,
    chosen_options,
    epoch_maps,
    frame_map,
    map_words,
    probe_maps,
    recorded_maps,
    timelapse_method_names,
    timelapse_methods,
    timelapse_spec,
)

GRID, PREFIX, LAYERS, HEADS = (3, 4), 1, 3, 2
TOKENS = PREFIX + GRID[0] * GRID[1]
ROOT = Path(__file__).resolve().parents[2] / "vitexplorer"


def _attention(seed: int) -> np.ndarray:
    """A random analysis's attention, (layers, heads, tokens, tokens), rows summing to 1."""
    raw = np.random.default_rng(seed).random((LAYERS, HEADS, TOKENS, TOKENS)) ** 3
    return (raw / raw.sum(-1, keepdims=True)).astype(np.float32)


def _timelapse() -> tuple[TimeLapse, list[np.ndarray]]:
    """Two frames of one probe, each kept from a full attention as the recorder keeps it: the
    CLS rows over the patches, and the rollout's CLS row whole."""
    attentions = [_attention(0), _attention(1)]
    frames = []
    for epoch, attention in enumerate(attentions):
        spec = SimpleNamespace(attention=attention, spec=_spec())
        rollout = explanation_map("rollout", MethodOptions(), analysis=spec)
        zeros = np.zeros((1, LAYERS, HEADS), np.float32)
        frames.append(
            Frame(
                epoch=epoch,
                predicted=np.array([0], np.int64),
                probability=np.array([0.6], np.float32),
                cls_attention=attention[None, :, :, 0, PREFIX:].copy(),
                rollout=rollout.reshape(1, -1),
                distance=zeros,
                entropy=zeros,
                prefix_share=zeros,
            )
        )
    timelapse = TimeLapse(
        grid=GRID,
        patch_size=8,
        num_prefix=PREFIX,
        num_classes=3,
        sources=["probe.png"],
        images=np.zeros((1, 32, 32, 3), np.uint8),
        labels=np.array([1], np.int64),
        frames=frames,
    )
    return timelapse, attentions


def _spec():
    timelapse = SimpleNamespace(
        grid=GRID,
        patch_size=8,
        num_prefix=PREFIX,
        num_classes=3,
        frames=[SimpleNamespace(distance=np.zeros((1, LAYERS, HEADS)))],
    )
    return timelapse_spec(timelapse)


def test_the_maps_shown_are_the_catalogues_that_read_the_attention() -> None:
    names = timelapse_method_names()
    assert set(names) == {m.name for m in catalogue() if not m.needs_model}
    assert "relevance" not in names and "grad-attention" not in names  # they need the model
    recorded = recorded_maps()
    assert names[0] in recorded  # the default: a map kept whole, as the command line's
    assert set(recorded) <= set(method_names())
    assert set(recorded) <= {f for f in Frame.__dataclass_fields__}  # a field of its name
    assert {o.name for o in chosen_options()} == {"layer", "head"}  # every layer and head kept
    # a checkpoint's description names each recorded map by its catalogue name
    timelapse, _ = _timelapse()
    meta = timelapse.metadata()
    assert {k: meta[k] for k in recorded} == recorded
    assert recorded["rollout"].startswith("rollout of the CLS token: heads averaged")


def test_a_frames_rows_are_an_analysis_attention_for_the_dispatcher() -> None:
    timelapse, attentions = _timelapse()
    spec = _spec()
    for index, attention in enumerate(attentions):
        analysis = SimpleNamespace(attention=attention, spec=spec)
        for layer in (0, 1, -1):
            for head in (None, 0, 1):
                options = MethodOptions(layer=layer, head=head)
                kept = frame_map(timelapse, index, 0, "attention", options)
                whole = explanation_map("attention", options, analysis=analysis)
                np.testing.assert_allclose(kept, whole, rtol=1e-6, atol=1e-9)
                assert kept.shape == GRID and kept.dtype == np.float32
        # the rollout comes back as kept, which is the catalogue's rollout of the analysis
        rollout = frame_map(timelapse, index, 0, "rollout", MethodOptions())
        np.testing.assert_array_equal(rollout, timelapse.frames[index].rollout[0].reshape(GRID))
        whole = explanation_map("rollout", MethodOptions(), analysis=analysis)
        np.testing.assert_allclose(rollout, whole, rtol=1e-6)
    # every epoch at once, the mean of the heads of the last layer as numbers
    maps = probe_maps(timelapse, 0, "attention", -1, None)
    expected = np.stack([a[-1, :, 0, PREFIX:].mean(0).reshape(GRID) for a in attentions])
    np.testing.assert_allclose(maps, expected, rtol=1e-6)
    np.testing.assert_array_equal(
        maps, epoch_maps(timelapse, 0, "attention", MethodOptions(layer=-1))
    )


def test_titles_are_the_catalogues() -> None:
    spec = _spec()
    words = map_words("attention", MethodOptions(layer=1, head=0), spec)
    assert words == "attention · layer 2 of 3, head 1 of 2 · the CLS token"
    assert map_words("rollout", MethodOptions(), spec) == recorded_maps()["rollout"]


@pytest.mark.parametrize(
    ("method", "options", "words"),
    [
        ("relevance", MethodOptions(), "unknown time-lapse map 'relevance'; use one of rollout"),
        ("attention", MethodOptions(token=3), "the CLS token's maps (token 1) only, not token 4"),
        ("rollout", MethodOptions(head_fusion="max"), "its head fusion cannot be changed"),
        ("rollout", MethodOptions(start_layer=1), "its start layer cannot be changed"),
        ("attention", MethodOptions(layer=3), "layer 4 does not exist: the model has layers 1"),
        ("attention", MethodOptions(head=2), "head 3 does not exist: the model has heads 1 to 2"),
    ],
)
def test_what_a_time_lapse_cannot_show_is_one_line(
    method: str, options: MethodOptions, words: str
) -> None:
    timelapse, _ = _timelapse()
    with pytest.raises(ValueError, match=re.escape(words)) as caught:
        frame_map(timelapse, 0, 0, method, options)
    assert "\n" not in str(caught.value)


def test_the_command_lines_choices_and_flags_come_from_the_catalogue() -> None:
    parser = timelapse_parser()
    actions = {a.dest: a for a in parser._actions}
    assert tuple(actions["map"].choices) == timelapse_method_names()
    assert actions["map"].default == timelapse_methods()[0].name
    for option in chosen_options():
        assert option.flag in actions[option.name].option_strings
        assert actions[option.name].help == option.help
    with pytest.raises(SystemExit) as caught:
        parser.parse_args(["x.safetensors", "--out", "o", "--map", "relevance"])
    assert caught.value.code == 2


def test_a_checkpoint_written_before_reads_the_same() -> None:
    """The stored arrays and description are as before: a time-lapse read back from its
    tensors shows the same maps."""
    timelapse, _ = _timelapse()
    tensors = {k.removeprefix("timelapse."): v for k, v in timelapse.tensors().items()}
    again = timelapse_from(tensors, timelapse.metadata())
    for method in timelapse_method_names():
        np.testing.assert_allclose(
            probe_maps(again, 0, method, 1, 0), probe_maps(timelapse, 0, method, 1, 0), atol=1e-3
        )  # float16 in the checkpoint


def test_no_method_name_is_spelled_in_the_time_lapse_code() -> None:
    """The time-lapse's files name no method: they ask the catalogue."""
    names = set(method_names())
    files = [
        "core/training/timelapse.py",
        "core/training/timelapse_frames.py",
        "core/training/timelapse_check.py",
        "cli/timelapse.py",
        "gui/timelapse_view.py",
    ]
    spelled = [
        f"{name}:{node.lineno}"
        for name in files
        for node in ast.walk(ast.parse((ROOT / name).read_text()))
        if isinstance(node, ast.Constant) and node.value in names
    ]
    assert spelled == []
