"""Help > How to use: a short, real help in a window of its own (not modal): what each view
shows, the keyboard shortcuts (read from the window's own actions, so the list cannot go
stale), the methods with their papers, and where files go."""

from __future__ import annotations

import html
import os
import sys
from pathlib import Path

from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout, QWidget

from vitexplorer.core.explain.method import Method, catalogue

# keys the views handle themselves (no menu action carries them)
VIEW_KEYS = (
    ("Click a patch", "select it: every view shows where it attends"),
    ("Arrow keys", "move the selected patch one patch over"),
    ("Click a head tile", "select that head (the last tile is the mean of the heads)"),
    ("Click a row of the attention matrix", "select that token"),
)

VIEWS = (
    (
        "Model box",
        "The model in use, its weights and device (the window's title and status bar name it "
        "too). <i>timm model…</i> and <i>Hugging Face model…</i> open a list to filter as you "
        "type. Weights that are not downloaded are offered in a bar above the image, while "
        "the model in use (or the demo model) stays.",
    ),
    (
        "Image",
        "The image as the model sees it (the centre crop, or the whole image with "
        "<i>Whole image</i>), the patch grid and the selected method's map over it. Its "
        "colour bar gives the map's values.",
    ),
    ("Predictions", "The model's five most likely classes and their probabilities."),
    (
        "Heads",
        "The selected token's raw attention in every head of the selected layer, and their mean.",
    ),
    (
        "Attention matrix",
        "The whole token-by-token attention of the selected layer and head: row <i>i</i> is "
        "where token <i>i</i> attends. Prefix tokens (CLS, distillation, registers) come "
        "first, then the patches row by row.",
    ),
    (
        "Compare",
        "A second method, or the same method for another class, beside the first, for the "
        "same token. <i>Compare with: another model</i> puts a second model beside the "
        "explorer's instead (the model before fine-tuning, a built-in model or a checkpoint) "
        "on the same image, token, method, layer and head: both on one colour scale, the "
        "difference B minus A (after minus before when one is the other's base) on a "
        "diverging scale, and the heads whose "
        "attention distance, entropy or prefix share changed most. Click either view to "
        "select the same place in both.",
    ),
    (
        "Train",
        "Fine-tunes the explorer's model, or trains a new small ViT from scratch with the "
        "architecture you set, on CIFAR-10, a folder of class folders or a pixel CSV, with "
        "live curves; the explorer then uses the trained model. Its Time-lapse page shows a "
        "few probe images' attention and prediction before training and after every epoch, "
        "with each head's attention distance; Save keeps it in the checkpoint.",
    ),
    (
        "Model analytics",
        "Per-head statistics (attention distance, entropy, the prefix tokens' share) for the "
        "image or a folder, the position embeddings' similarity and the patch filters' "
        "principal components. Click a head to open it in the explorer.",
    ),
)


def method_help(method: Method) -> tuple[str, str, str]:
    """A method's entry in the help, from the catalogue: its heading, what its map shows and
    its cost in passes, and its paper with the year."""
    paper = method.paper
    if method.year is not None and str(method.year) not in paper:
        paper = f"{paper}, {method.year}" if paper else str(method.year)
    cost = method.cost_words()
    return (method.help_title, f"{method.help} Cost: {html.escape(cost)}.", paper)


OTHER_TOOLS = (
    (
        "Sanity check (command line: vitexplorer sanity)",
        "re-initialises the model layer by layer from the top and measures how far the map "
        "moves; a map that does not move explains nothing of the weights.",
        "Adebayo et al., Sanity Checks for Saliency Maps, NeurIPS 2018",
    ),
    (
        "Faithfulness (vitexplorer faithfulness)",
        "removes the most (or least) relevant patches step by step and follows the model's "
        "confidence: a faithful map makes it fall fast.",
        "Chefer, Gur and Wolf 2021, the perturbation test",
    ),
    (
        "Head statistics",
        "mean attention distance per head, as in the ViT paper's figure.",
        "Dosovitskiy et al., An Image is Worth 16x16 Words, ICLR 2021",
    ),
)


def methods() -> list[tuple[str, str, str]]:
    """(heading, what it shows and costs, paper) for every method of the catalogue as it is
    now, then the checks and statistics."""
    return [*(method_help(m) for m in catalogue()), *OTHER_TOOLS]


def shortcuts(window: QWidget) -> list[tuple[str, str]]:
    """(key, what it does) for every action of ``window`` that has a shortcut, in menu order."""
    found = []
    for action in window.findChildren(QAction):
        key = action.shortcut()
        if key.isEmpty():
            continue
        text = action.text().replace("&", "").rstrip("…").rstrip(".")
        found.append((key.toString(QKeySequence.SequenceFormat.NativeText), text))
    return list(dict.fromkeys(found))


def weights_cache() -> str:
    """Where torchvision's downloaded weights are kept: ``torch.hub.get_dir()``, or before torch
    is imported (the help must not wait for it) the same rule that function follows."""
    if "torch" in sys.modules:
        import torch.hub

        return str(Path(torch.hub.get_dir()) / "checkpoints")
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "torch"
    )
    return str(Path(home) / "hub" / "checkpoints")


def help_html(window: QWidget, settings: QSettings) -> str:
    """The help's text, with this window's shortcuts and this machine's folders."""
    from vitexplorer.core.models.download import default_data_root

    def rows(pairs) -> str:
        return "".join(
            f"<tr><td><b>{html.escape(a)}</b>&nbsp;&nbsp;</td><td>{b}</td></tr>" for a, b in pairs
        )

    keys = [(key, html.escape(text)) for key, text in shortcuts(window)]
    keys += [(key, html.escape(text)) for key, text in VIEW_KEYS]
    listed = "".join(
        f"<li><b>{name}</b>: {text}"
        + (f"<br><i>{html.escape(paper)}</i>" if paper else "")
        + "</li>"
        for name, text, paper in methods()
    )
    places = [
        (
            "Exports",
            "File &gt; Export view writes the picture (.png), the map (.npy) and its "
            "method card (.json), which says how to compute the map again, where you choose.",
        ),
        (
            "Saved models",
            "File &gt; Save model writes a .safetensors checkpoint with its "
            "metadata where you choose; File &gt; Open model reads it back.",
        ),
        (
            "Downloaded weights",
            html.escape(weights_cache()) + " (timm and Hugging Face models: their own caches)",
        ),
        ("Datasets", html.escape(str(default_data_root()))),
        ("Settings", html.escape(settings.fileName())),
    ]
    return (
        "<h2>vitexplorer</h2>"
        "<p>Drop images on the window (or File &gt; Open images, or paste one). The model's "
        "predictions appear on the right; click a patch to see where it attends, in every "
        "layer and head. Layers, heads, rows and columns are numbered from 1.</p>"
        f"<h3>The views</h3><table>{rows(VIEWS)}</table>"
        f"<h3>Keys</h3><table>{rows(keys)}</table>"
        f"<h3>Methods</h3><ul>{listed}</ul>"
        f"<h3>Where files go</h3><table>{rows(places)}</table>"
    )


class HelpWindow(QDialog):
    """The help, beside the main window (not modal: the app stays usable while it is open)."""

    def __init__(self, window: QWidget, settings: QSettings) -> None:
        super().__init__(window)
        self.setWindowTitle("How to use vitexplorer")
        self.setModal(False)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, False)
        self.browser = QTextBrowser()
        self.browser.setOpenExternalLinks(True)
        self.browser.setHtml(help_html(window, settings))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.browser)
        layout.addWidget(buttons)
        self.resize(640, 720)
