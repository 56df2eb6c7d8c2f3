"""Help > About: a thin dialog showing :func:`annotator.about.about_markdown` (version, model and
sample-data licences, torch / CUDA build, devices, PySide6 / Qt) next to the app icon."""

from __future__ import annotations

from PySide6.QtCore import Qt, qVersion
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QHBoxLayout, QLabel, QTextBrowser, QVBoxLayout, QWidget

from annotator.about import about_markdown, runtime_info


def app_icon() -> QIcon:
    """The app icon from the package resources (``icons/annotator-{48,128,256}.png``); an empty
    icon if the files are missing."""
    from annotator import resources

    icon = QIcon()
    for n in (48, 128, 256):
        pixmap = QPixmap()
        try:
            data = (resources() / "icons" / f"annotator-{n}.png").read_bytes()
        except OSError:
            continue
        if pixmap.loadFromData(data, "PNG"):
            icon.addPixmap(pixmap)
    return icon


class AboutDialog(QDialog):
    """Version, licences and runtime of this installation (read-only text, links open outside)."""

    def __init__(self, parent: QWidget | None = None, info: dict | None = None):
        super().__init__(parent)
        self.setWindowTitle("About annotator")
        self.resize(720, 560)
        self.info = runtime_info() if info is None else info
        self.markdown = about_markdown(self.info, qt_version=qVersion())
        icon = QLabel(self)
        icon.setPixmap(app_icon().pixmap(96, 96))
        icon.setAlignment(Qt.AlignTop | Qt.AlignHCenter)
        self.text = QTextBrowser(self)
        self.text.setOpenExternalLinks(True)
        self.text.setMarkdown(self.markdown)
        buttons = QDialogButtonBox(QDialogButtonBox.Close, self)
        buttons.rejected.connect(self.reject)
        buttons.accepted.connect(self.accept)
        row = QHBoxLayout()
        row.addWidget(icon, 0)
        row.addWidget(self.text, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(buttons)

    def plain_text(self) -> str:
        """What the dialog shows, as plain text (for tests and copy / paste)."""
        return self.text.toPlainText()
