"""A report as a list of blocks, rendered to markdown (figures as files) and to one
self-contained HTML page (figures embedded)."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[str]]


@dataclass(frozen=True)
class Link:
    href: str  # relative to the report
    text: str


@dataclass(frozen=True)
class Figure:
    name: str  # file name under figures/
    png: bytes
    caption: str


Block = Heading | Paragraph | Table | Link | Figure


def to_markdown(blocks: Sequence[Block]) -> str:
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append("#" * block.level + " " + block.text)
        elif isinstance(block, Paragraph):
            parts.append(block.text)
        elif isinstance(block, Table):
            lines = ["| " + " | ".join(block.header) + " |", "|" + "---|" * len(block.header)]
            lines += ["| " + " | ".join(row) + " |" for row in block.rows]
            parts.append("\n".join(lines))
        elif isinstance(block, Link):
            parts.append(f"[{block.text}]({block.href})")
        else:
            parts.append(f"![{block.caption}](figures/{block.name})\n\n*{block.caption}*")
    return "\n\n".join(parts) + "\n"


STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;"
    "color:#222}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
    "padding:4px 8px;text-align:right}th{background:#f4f4f4}td:first-child,th:first-child"
    "{text-align:left}img{max-width:100%}figcaption{color:#555;font-size:90%}"
)


def to_html(title: str, blocks: Sequence[Block]) -> str:
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{STYLE}</style></head><body>"
    ]
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            parts.append(f"<p>{html.escape(block.text)}</p>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{html.escape(h)}</th>" for h in block.header)
            body = "".join(
                "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                for row in block.rows
            )
            parts.append(f"<table><tr>{head}</tr>{body}</table>")
        elif isinstance(block, Link):
            href = html.escape(block.href, quote=True)
            parts.append(f"<p><a href='{href}'>{html.escape(block.text)}</a></p>")
        else:
            data = base64.b64encode(block.png).decode()
            parts.append(
                f"<figure><img alt='{html.escape(block.caption)}' "
                f"src='data:image/png;base64,{data}'><figcaption>"
                f"{html.escape(block.caption)}</figcaption></figure>"
            )
    parts.append("</body></html>")
    return "\n".join(parts)
