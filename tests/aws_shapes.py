"""A request checked against its operation's input shape in the pinned botocore service model
(botocore/data/<service>/<date>/service-2.json): required members, enums, patterns (whole-value matches),
lengths, ranges, types, and members the operation does not have. tests/aws_api.py builds the requests."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=None)
def _model(service: str):
    import botocore.session

    return botocore.session.get_session().get_service_model(service)


def problems(call) -> list[str]:
    """What the service would refuse in this request, per the botocore model: [] when it would accept it."""
    shape = _model(call.service).operation_model(call.operation).input_shape
    return [f"{call.service} {call.operation}: {p}" for p in _check(shape, call.params, "")]


def _check(shape, value: Any, path: str) -> list[str]:
    where = path or shape.name
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            return [f"{where}: expected a structure, got {value!r}"]
        out = [f"{where}: missing required member {m!r}" for m in shape.required_members if value.get(m) is None]
        for key, item in value.items():
            member = shape.members.get(key)
            if member is None:
                out.append(f"{where}: unknown member {key!r} (members: {', '.join(shape.members)})")
            else:
                out += _check(member, item, f"{path}.{key}" if path else key)
        return out
    if kind == "list":
        if not isinstance(value, list):
            return [f"{where}: expected a list, got {value!r}"]
        out = _bounds(shape, len(value), where, "items")
        for n, item in enumerate(value):
            out += _check(shape.member, item, f"{where}[{n}]")
        return out
    if kind == "map":
        if not isinstance(value, dict):
            return [f"{where}: expected a map, got {value!r}"]
        out = _bounds(shape, len(value), where, "entries")
        for key, item in value.items():
            out += _check(shape.key, key, f"{where} key") + _check(shape.value, item, f"{where}[{key!r}]")
        return out
    if kind == "string":
        if not isinstance(value, str):
            return [f"{where}: expected a string, got {value!r}"]
        out = _bounds(shape, len(value), where, "characters")
        if shape.enum and value not in shape.enum:
            out.append(f"{where}: {value!r} is not one of {', '.join(shape.enum)}")
        pattern = shape.metadata.get("pattern")
        # The whole value must match: AWS answers "Member must satisfy regular expression pattern" for an IAM
        # role name with a space, though `[\w+=,.@-]+` occurs inside it (Java's Pattern.matches semantics).
        if pattern and _compiled(pattern) is not None and not _compiled(pattern).fullmatch(value):
            out.append(f"{where}: {value!r} does not match the pattern {pattern}")
        return out
    if kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            return [f"{where}: expected an integer, got {value!r}"]
        out = []
        if "min" in shape.metadata and value < shape.metadata["min"]:
            out.append(f"{where}: {value} is below the minimum {shape.metadata['min']}")
        if "max" in shape.metadata and value > shape.metadata["max"]:
            out.append(f"{where}: {value} is above the maximum {shape.metadata['max']}")
        return out
    if kind == "boolean":
        return [] if isinstance(value, bool) else [f"{where}: expected a boolean, got {value!r}"]
    return []


def _bounds(shape, size: int, where: str, unit: str) -> list[str]:
    out = []
    if "min" in shape.metadata and size < shape.metadata["min"]:
        out.append(f"{where}: {size} {unit}, at least {shape.metadata['min']} required")
    if "max" in shape.metadata and size > shape.metadata["max"]:
        out.append(f"{where}: {size} {unit}, at most {shape.metadata['max']} allowed")
    return out


@lru_cache(maxsize=None)
def _compiled(pattern: str):
    try:
        return re.compile(pattern)
    except re.error:  # a Java-only construct: the length and enum checks still apply
        return None
