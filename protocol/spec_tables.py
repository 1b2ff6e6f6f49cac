"""Renders the key and code tables of SPEC.md from the codec's own tables.

SPEC.md holds the output between the ``<!-- tables:begin -->`` and
``<!-- tables:end -->`` markers; a test fails when the two differ, so the
document cannot drift from the wire. Regenerate with
``python -m kickstand.protocol.spec_tables --write``.
"""

from __future__ import annotations

import json
import sys
from enum import IntEnum
from pathlib import Path

from kickstand.protocol.v1 import codec, enums, fields
from kickstand.protocol.v1 import messages as m

SPEC = Path(__file__).resolve().parent / "SPEC.md"
BEGIN, END = "<!-- tables:begin -->", "<!-- tables:end -->"


def _type(conv: fields.Conv[object]) -> str:
    match conv:
        case fields.UInt(maximum=hi, minimum=lo):
            if hi == fields.U32:
                return "uint" if lo == 0 else f"uint ≥ {lo}"
            if hi in (fields.U31, fields.U63):
                return f"uint ≤ 2^{hi.bit_length()}−1"
            return f"uint ≤ {hi}"
        case fields.Text(max_len=hi, min_len=lo):
            return f"tstr ({lo}..{hi})"
        case fields.Bytes(min_len=lo, max_len=hi):
            return f"bstr ({lo})" if lo == hi else f"bstr ({lo}..{hi})"
        case fields.Bool():
            return "bool"
        case fields.Enum(enum=e):
            return f"uint: {e.__name__}"
        case fields.Scaled(scale=s, minimum=lo, maximum=hi, unit=unit):
            # The integer on the wire, then the value it counts: 215 is 21.5 °C.
            u = f" {unit}" if unit else ""
            return f"int, 1/{s}{u}: {round(lo * s)}..{round(hi * s)} ({lo:g}..{hi:g}{u})"
        case fields.ListOf(item=item, max_items=n):
            return f"[* {_type(item)}] (≤ {n})"
        case fields.Pair(first=a, second=b):
            return f"[{_type(a)}, {_type(b)}]"
        case fields.ConfigMap(max_items=n):
            return f"{{* tstr (0..64) => bool / int64 / finite float / tstr}} (≤ {n})"
    if type(conv).__name__ == "_ComponentConv":
        return "[kind tstr, index uint, firmware tstr]"
    if type(conv).__name__ == "_AckRangeConv":
        return "[boot_id uint ≥ 1, first_seq uint, last_seq uint]"
    return "uint: SpotState (spot ≥ 1) / DeviceState (spot 0)"


def _table(specs: tuple[fields.FieldSpec, ...], first: list[str] | None = None) -> list[str]:
    rows = ["| key | field | type | required |", "| ---: | --- | --- | :---: |"]
    rows += first or []
    for spec in specs:
        required = "yes" if spec.required else ""
        type_text = _type(spec.conv)
        if spec.omit is not None:  # the value a missing key stands for (left off the wire)
            type_text += f"; absent: {json.dumps(spec.omit)}"
        rows.append(f"| {spec.key} | `{spec.attr}` | {type_text} | {required} |")
    if len(rows) == 2:
        rows.append("| | *(empty map)* | | |")
    return rows


def render() -> str:
    out: list[str] = ["### Body keys per message", ""]
    for cls in (m.Birth, m.Death, m.Heartbeat, m.Status, m.Telemetry, m.CommandResult):
        out += [f"#### {cls.__name__} — channel `{codec.CHANNEL_OF_CLASS[cls].value}`", ""]
        out += [*_table(codec.BODY_FIELDS[cls]), ""]
    out += [
        "#### Events — channel `evt`",
        "",
        "Key 0 is the EventType code; the other keys keep one meaning across events.",
        "",
    ]
    for event_cls, event_code in codec.EVENT_TYPES.items():
        out += [f"**{event_cls.__name__}** (EventType {int(event_code)})", ""]
        first = [f"| 0 | type | {int(event_code)} | yes |"]
        out += [*_table(codec.BODY_FIELDS[event_cls], first), ""]
    for down_cls in (m.BootReply, m.TimeReply, m.Ack, m.BadgeReply):
        channel = codec.CHANNEL_OF_CLASS[down_cls].value
        out += [f"#### {down_cls.__name__} — channel `{channel}`", ""]
        out += [*_table(codec.DOWN_FIELDS[down_cls]), ""]
    out += ["### Command arguments (key 5 of the signed payload)", ""]
    for command_cls, command_code in codec.COMMAND_TYPES.items():
        out += [f"**{command_cls.__name__}** (CommandType {int(command_code)})", ""]
        out += [*_table(codec.COMMAND_FIELDS[command_cls]), ""]
    out += ["### Codes", ""]
    for name in sorted(vars(enums)):
        e = getattr(enums, name)
        if isinstance(e, type) and issubclass(e, IntEnum) and e is not IntEnum:
            out.append(f"**{name}**: " + ", ".join(f"{int(v)} `{v.name}`" for v in e))
            out.append("")
    return "\n".join(out).rstrip() + "\n"


def spliced(text: str) -> str:
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n\n{render()}\n{END}{tail}"


if __name__ == "__main__":
    if "--write" in sys.argv:
        SPEC.write_text(spliced(SPEC.read_text()))
    else:
        print(render())
