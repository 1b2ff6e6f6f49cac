"""docs/webhook-topics.md, generated from the event catalogue (a test fails while stale).

python -m kickstand.cloud.events.docs --write
"""

from __future__ import annotations

import argparse
import sys
import types
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from kickstand.cloud.events.catalogue import CATALOGUE, EventType
from kickstand.cloud.events.payloads import EventPayload, NetworkEvent, NetworksEvent

DOC = Path(__file__).resolve().parents[2] / "docs" / "webhook-topics.md"

_NAMES: dict[Any, str] = {
    int: "integer",
    str: "string",
    bool: "boolean",
    float: "number",
    datetime: "string (ISO 8601)",
    Decimal: "string (decimal)",
    type(None): "null",
}


def type_name(annotation: Any) -> str:
    """A field's type as a reader of the JSON sees it (``integer | null``, ``object``)."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(a) for a in get_args(annotation))
    if origin is list:
        return f"array of {type_name(get_args(annotation)[0])}"
    if origin is dict:
        return "object"
    return _NAMES.get(annotation, getattr(annotation, "__name__", str(annotation)))


def scope_text(model: type[EventPayload]) -> str:
    if issubclass(model, NetworkEvent):
        return "`network_id`"
    if issubclass(model, NetworksEvent):
        return "`network_ids`"
    raise TypeError(f"{model.__name__} names no network scope")


def _fields(model: type[EventPayload]) -> list[str]:
    rows = ["| field | type |", "| --- | --- |"]
    for name, info in model.model_fields.items():
        wire = info.serialization_alias or name
        rows.append(f"| `{wire}` | {type_name(info.annotation)} |")
    return rows


def render() -> str:
    out = [
        "# Webhook topics",
        "",
        "<!-- Generated from kickstand.cloud.events.catalogue by "
        "`python -m kickstand.cloud.events.docs --write`; do not edit by hand. -->",
        "",
        "Every event Kickstand sends, with the `data` of its envelope (docs/webhooks.md). A",
        "topic's payload always carries every field listed (`null` where the type allows it),",
        "and nothing else. **Scope**: the field that names the event's network(s); an endpoint",
        "registered with `network_ids` receives the events of those networks only (an event",
        "whose scope is `null` reaches unscoped endpoints only).",
        "",
        "| topic | resource | scope | when |",
        "| --- | --- | --- | --- |",
    ]
    for event in CATALOGUE.values():
        out.append(
            f"| [`{event.topic}`](#{_anchor(event)}) | {event.resource_type} | "
            f"{scope_text(event.payload)} | {event.description} |"
        )
    shapes: dict[type[EventPayload], list[str]] = {}
    for event in CATALOGUE.values():
        shapes.setdefault(event.payload, []).append(event.topic)
    out += ["", "## Payloads", ""]
    for model, topics in shapes.items():
        out += [f"### {', '.join(f'`{t}`' for t in topics)}", ""]
        summary = _summary(model)
        out += [summary, ""] if summary else []
        out += [*_fields(model), ""]
    return "\n".join(out).rstrip() + "\n"


def _summary(model: type[EventPayload]) -> str:
    """The model's docstring, first paragraph, in Markdown's backticks."""
    paragraph = (model.__doc__ or "").strip().split("\n\n", 1)[0]
    return " ".join(line.strip() for line in paragraph.splitlines()).replace("``", "`")


def _anchor(event: EventType[Any]) -> str:
    topics = [e.topic for e in CATALOGUE.values() if e.payload is event.payload]
    heading = ", ".join(topics)
    return "".join(c for c in heading.lower() if c.isalnum() or c in " -_").replace(" ", "-")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help=f"write {DOC}")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        DOC.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
