"""What the explorer's controllers (the explanations, the model comparison, the overview) use
of the main window, named in one place: :class:`Explorer` holds the objects they read and draw
into, and :class:`ExplorerHost` the few things they may ask of the window. They reach nothing
else of it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QWidget

    from vitexplorer.core.explorer.decoded import DecodedImages
    from vitexplorer.core.explorer.session import ImageEntry, ImageSession
    from vitexplorer.core.explorer.state import ExplorerState
    from vitexplorer.gui.controls import ViewBar
    from vitexplorer.gui.session import ModelSession
    from vitexplorer.gui.views.image_view import ImageView
    from vitexplorer.gui.views.matrix_view import AttentionMatrixView
    from vitexplorer.gui.views.panels import Captioned, NoticeBar
    from vitexplorer.gui.workers import ModelInfo


class ExplorerHost(Protocol):
    """What a controller may ask of the window (the main window implements it)."""

    def select_token(self, token: int) -> None: ...

    def select_patch(self, row: int, col: int) -> None: ...

    def move_patch(self, d_row: int, d_col: int) -> None: ...

    def hover_patch(self, row: int, col: int, view: Any = None, bar: Any = None) -> None: ...

    def hover_text(self, text: str) -> None: ...

    def say(self, text: str, milliseconds: int) -> None: ...

    def show_message(self, title: str, text: str) -> None: ...

    def show_explorer(self) -> None: ...

    def adopted_run(self) -> Any: ...  # the Train tab's FinetuneResult adopted, or None


@dataclass
class Explorer:
    """The explorer's objects, for its controllers: the state, the open images, the
    explorer's model session, the decoded images both sessions read, the views drawn into,
    the settings and the notice bar, and the window as an :class:`ExplorerHost`."""

    host: ExplorerHost
    parent: QWidget  # for dialogs
    state: ExplorerState
    images: ImageSession
    model_session: ModelSession
    decoded: DecodedImages
    settings: QSettings
    notice: NoticeBar
    image_view: ImageView
    view_bar: ViewBar
    heads_panel: Captioned
    matrix_panel: Captioned
    matrix_view: AttentionMatrixView

    @property
    def analysis(self):  # ImageAnalysis | None
        """The image on screen's analysis by the explorer's model."""
        return self.images.analysis

    @property
    def model(self) -> ModelInfo | None:
        return self.model_session.info

    @property
    def current(self) -> ImageEntry | None:
        return self.images.current

    @property
    def current_key(self) -> str | None:
        return self.images.current_key
