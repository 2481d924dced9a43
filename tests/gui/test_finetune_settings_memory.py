"""The Train tab's form is made from the settings' metadata, remembers each value under its
field's name, reads what older versions kept under other names once, and the model before a
saved fine-tune is found through the checkpoint's record of its base."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QCheckBox, QComboBox

from vitexplorer.core.models.base_record import base_request, file_sha256
from vitexplorer.core.training.config import FinetuneConfig, TrainConfig, described
from vitexplorer.gui.finetune_settings import FORM_SETTINGS, SCRATCH, FinetuneSettings


def _form(qtbot, store: QSettings) -> FinetuneSettings:
    form = FinetuneSettings(store)
    qtbot.addWidget(form)
    form.set_num_layers(4)
    return form


def test_the_widgets_follow_the_fields_metadata(qtbot, tmp_path: Path) -> None:
    form = _form(qtbot, QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat))
    for name, meta in FORM_SETTINGS.items():
        widget = form.widgets[name]
        assert widget.toolTip() == meta.tip
        if isinstance(widget, QComboBox):
            assert [widget.itemData(i) for i in range(widget.count())] == list(meta.values)
        elif isinstance(widget, QCheckBox):
            assert widget.text() == meta.text
        else:  # within what check() accepts, as people count it
            low = meta.form_low if meta.form_low is not None else meta.low
            assert widget.minimum() >= low * meta.scale
            if not isinstance(meta.high, str):
                assert widget.maximum() <= meta.high * meta.scale
    assert form.val_percent.suffix() == " %" and form.val_percent.value() == 10
    # the labels are the metadata's
    label = form.main_form.labelForField(form.per_class)
    assert label.text() == described(FinetuneConfig, "per_class").label == "Images per class"
    assert FinetuneConfig(**form.config()) == FinetuneConfig()


def test_values_are_kept_under_the_field_names(qtbot, tmp_path: Path) -> None:
    store = QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat)
    form = _form(qtbot, store)
    form.val_percent.setValue(25)
    form.warmup.setValue(1.5)
    form.smoothing.setValue(0.2)
    form.freeze_box.setCurrentIndex(form.freeze_box.findData("last"))
    form.blocks.setValue(3)
    form.augment.setChecked(True)
    form.remember()
    store.sync()
    assert float(store.value("finetune/val_fraction")) == 0.25
    assert float(store.value("finetune/warmup_epochs")) == 1.5
    assert float(store.value("finetune/label_smoothing")) == 0.2
    assert store.value("finetune/freeze") == "last:3"
    again = _form(qtbot, QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat))
    config = again.config()
    assert (config["val_fraction"], config["warmup_epochs"]) == (0.25, 1.5)
    assert (config["label_smoothing"], config["freeze"], config["augment"]) == (0.2, "last:3", True)


def test_the_names_older_versions_kept_are_read_once(qtbot, tmp_path: Path) -> None:
    path = str(tmp_path / "old.ini")
    old = QSettings(path, QSettings.IniFormat)
    for key, value in {"val_percent": 30, "warmup": 2.5, "smoothing": 0.15, "freeze": "last",
                       "blocks": 2, "mixed_precision": 0, "per_class": 40}.items():  # fmt: skip
        old.setValue(f"finetune/{key}", value)
    old.setValue(f"{SCRATCH}/val_percent", 5)
    old.sync()
    form = _form(qtbot, QSettings(path, QSettings.IniFormat))
    config = form.config()
    assert abs(config["val_fraction"] - 0.3) < 1e-12 and config["warmup_epochs"] == 2.5
    assert config["label_smoothing"] == 0.15 and config["freeze"] == "last:2"
    assert config["mixed_precision"] is False and config["per_class"] == 40
    form.remember()
    store = QSettings(path, QSettings.IniFormat)
    for gone in ("val_percent", "warmup", "smoothing", "blocks"):
        assert store.value(f"finetune/{gone}") is None
    assert abs(float(store.value("finetune/val_fraction")) - 0.3) < 1e-12
    assert int(store.value(f"{SCRATCH}/val_percent")) == 5  # that mode's are read when it is shown
    form.mode_box.setCurrentIndex(form.mode_box.findData(SCRATCH))
    assert TrainConfig(**form.config()).val_fraction == 0.05
    assert form.config()["epochs"] == TrainConfig().epochs  # nothing kept: the defaults


def test_the_model_before_a_saved_fine_tune_comes_from_its_record(tmp_path: Path) -> None:
    from vitexplorer.core.models.checkpoint import save_weights
    from vitexplorer.gui.model_compare_view import base_request as before
    from vitexplorer.gui.workers import ModelInfo, ModelRequest

    weights = tmp_path / "base.pth"
    weights.write_bytes(b"the base's bytes")
    record = base_request("timm:test_vit", str(weights), "timm")
    assert record.sha256 == file_sha256(weights)
    import torch

    meta = {"finetune": {"base": "timm test_vit, file base.pth", "base_request": record.to_dict()}}
    saved = tmp_path / "tuned.safetensors"
    save_weights(saved, {"w": torch.zeros(2)}, meta)
    # saved in this session: its request names the file, it keeps no weights_file
    info = ModelInfo(ModelRequest(str(saved), "default", "cpu"), None, "cpu", 1, 0.0, ("cpu",))
    request, label = before(info)
    assert request == ModelRequest("timm:test_vit", str(weights.resolve()), "cpu")
    weights.write_bytes(b"other bytes")
    request, why = before(info)
    assert request is None and "has changed since tuned.safetensors" in why and "\n" not in why
