"""Reports as Markdown and self-contained HTML from one list of blocks.

Figures are written as PNG files beside the Markdown (``figures/``) and embedded as base64
in the HTML, so report.html can be mailed alone. Every file is written atomically.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

from moodscope.atomic import write_atomic, write_text_atomic


def _plain(value):
    """What JSON cannot hold, as what it can: a pandas Series (per-track values, such as the
    novelty) as ``{id: value}``, numpy scalars and arrays as numbers and lists."""
    if hasattr(value, "to_dict") and hasattr(value, "index"):
        return {str(k): v for k, v in value.to_dict().items()}
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def write_json(path: str | Path, data) -> Path:
    return write_text_atomic(
        path, json.dumps(data, indent=2, sort_keys=False, default=_plain) + "\n"
    )


_CSS = """body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;
color:#222}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;
padding:4px 8px;text-align:right}th{background:#eee}td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #ddd}figcaption{color:#555;font-size:90%}
.note{background:#fff4d6;border-left:4px solid #e0a800;padding:.5em 1em}code{background:#f3f3f3}"""


class Report:
    """Collect headings, paragraphs, tables and figures; :meth:`write` renders both formats."""

    def __init__(self, title: str):
        self.title = title
        self.blocks: list[tuple[str, object]] = []
        self.figures: dict[str, bytes] = {}

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(("heading", (level, text)))

    def paragraph(self, text: str, *, note: bool = False) -> None:
        """Plain text; `backticks` become code, **stars** bold, in both formats."""
        self.blocks.append(("note" if note else "paragraph", text))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        self.blocks.append(
            ("table", ([str(h) for h in header], [[str(c) for c in r] for r in rows]))
        )

    def figure(self, fig: Figure, name: str, caption: str = "") -> None:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
        self.figures[name] = buffer.getvalue()
        self.blocks.append(("figure", (name, caption)))

    def markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for kind, value in self.blocks:
            if kind == "heading":
                level, text = value
                out += ["#" * level + " " + text, ""]
            elif kind in ("paragraph", "note"):
                out += [("> " if kind == "note" else "") + value, ""]
            elif kind == "table":
                header, rows = value
                out.append("| " + " | ".join(header) + " |")
                out.append("|" + "|".join("---" for _ in header) + "|")
                out += ["| " + " | ".join(r) + " |" for r in rows]
                out.append("")
            elif kind == "figure":
                name, caption = value
                out += [f"![{caption or name}](figures/{name}.png)", ""]
                if caption:
                    out += [f"*{caption}*", ""]
        return "\n".join(out)

    @staticmethod
    def _inline(text: str) -> str:
        import re

        text = html.escape(text)
        text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
        return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", text)

    def html(self) -> str:
        out = [
            "<!doctype html><html><head><meta charset='utf-8'>",
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>",
            f"<h1>{html.escape(self.title)}</h1>",
        ]
        for kind, value in self.blocks:
            if kind == "heading":
                level, text = value
                out.append(f"<h{level}>{html.escape(text)}</h{level}>")
            elif kind == "paragraph":
                out.append(f"<p>{self._inline(value)}</p>")
            elif kind == "note":
                out.append(f"<p class='note'>{self._inline(value)}</p>")
            elif kind == "table":
                header, rows = value
                out.append(
                    "<table><tr>" + "".join(f"<th>{self._inline(h)}</th>" for h in header) + "</tr>"
                )
                for r in rows:
                    out.append("<tr>" + "".join(f"<td>{self._inline(c)}</td>" for c in r) + "</tr>")
                out.append("</table>")
            elif kind == "figure":
                name, caption = value
                data = base64.b64encode(self.figures[name]).decode()
                out.append(
                    f"<figure><img alt='{html.escape(name)}' src='data:image/png;base64,{data}'>"
                    f"<figcaption>{html.escape(caption)}</figcaption></figure>"
                )
        out.append("</body></html>")
        return "\n".join(out)

    def write(self, out_dir: str | Path) -> Path:
        """Write ``report.md``, ``report.html`` and ``figures/*.png`` under ``out_dir``."""
        out_dir = Path(out_dir)
        for name, png in self.figures.items():
            write_atomic(out_dir / "figures" / f"{name}.png", png)
        write_text_atomic(out_dir / "report.md", self.markdown())
        write_text_atomic(out_dir / "report.html", self.html())
        return out_dir
