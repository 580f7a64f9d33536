"""User commands: what people (through the API) and operators ask of the engine.

Commands are typed msgspec structs with a `command` tag, so one decoder reads them from any
transport (an in-band Kafka control record, an HTTP body, a replayed log) without executing
anything. `Engine.apply` runs them; a command the engine cannot carry out raises
`CommandRefused` with a one-line reason and changes nothing.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Comment = Annotated[str, msgspec.Meta(max_length=4000)]


class Acknowledge(msgspec.Struct, tag_field="command", tag="acknowledge",
                  forbid_unknown_fields=True):
    """`user` takes charge of an open alert (stops its escalation)."""

    alert_id: Name
    user: Name
    comment: Comment | None = None
    at: int | None = None  # event time of the action (epoch ms); default: the engine's clock
    recorded_at: int | None = None  # wall clock when the runtime received it (epoch ms)


class Resolve(msgspec.Struct, tag_field="command", tag="resolve", forbid_unknown_fields=True):
    """`user` closes an open or acknowledged alert, saying why."""

    alert_id: Name
    user: Name
    comment: Comment
    at: int | None = None
    recorded_at: int | None = None


class ReplaceFences(msgspec.Struct, tag_field="command", tag="replace_fences",
                    forbid_unknown_fields=True):
    """Swap the geofences while running (a GeoJSON FeatureCollection); unchanged fences keep
    their per-device state. `version` orders replacements across partitions."""

    geojson: dict[str, Any]
    version: int = 0


Command = Acknowledge | Resolve | ReplaceFences


class CommandRefused(ValueError):
    """A command the engine cannot carry out; the message is the one-line reason."""


class UnknownAlert(CommandRefused, KeyError):
    """The command names an alert the engine does not know (or has forgotten)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


_decode = msgspec.json.Decoder(Command).decode


def decode_command(data: bytes) -> Command:
    """The command in a JSON body; CommandRefused with a one-line reason when it is not one."""
    try:
        return _decode(data)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise CommandRefused(f"invalid command: {str(exc).splitlines()[0]}") from None


def encode_command(command: Command) -> bytes:
    return msgspec.json.encode(command)
