"""User-defined verifiers from config: remote services, Python plug-ins, composites.

`resolve_verifiers(spec)` turns a config mapping into reward-server table entries,
name -> (verifier class, constructor options):

    [plugins.myremote]                       # a service speaking /v1/score shapes
    type = "remote"
    url = "http://127.0.0.1:9000/score"
    timeout_s = 5.0

    [plugins.mine]                           # a Python class, by dotted path
    class = "my_pkg.my_module:MyVerifier"
    options = { threshold = 0.5 }

    [plugins.math_fmt]                       # a weighted sum of other verifiers
    type = "composite"
    parts = [ { verifier = "math", weight = 1.0 },
              { verifier = "format", weight = 0.2 } ]

An entry names either `type` (a built-in: any name of `verifiers.registry.VERIFIERS`,
or "remote" / "composite") or `class` ("package.module:ClassName", which must
subclass `Verifier`). Its options are the `options` table plus every other key of the
entry. Composite parts name other entries of the same spec or verifiers of `base`
(the server's own table, so "math" gets its configured options); a part may add
`reference_key` (the part gets `reference[key]`) and `label` (its name in `info`).

What differs from a generic `_target_` instantiation: everything is checked when the
server starts, not on the first request. Unknown keys, option names the class does
not accept, classes that are not verifiers, unknown part names and cycles are
errors (`PluginError`) that name the entry. Classes are not instantiated here: a
verifier is built lazily in the process that runs it.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any

from verifiers.base import Verifier
from verifiers.composite import CompositeVerifier, LoopCompositeVerifier, Part
from verifiers.remote import RemoteVerifier

Entry = tuple[type[Verifier], dict[str, Any]]

# types that exist only as configured entries (they need options to mean anything)
TYPES: dict[str, type[Verifier]] = {
    "remote": RemoteVerifier,
    "composite": CompositeVerifier,
}

_PART_KEYS = {"verifier", "weight", "reference_key", "label"}


class PluginError(ValueError):
    """A verifier entry of the config is invalid; the message names the entry."""


def import_verifier_class(path: str) -> type[Verifier]:
    """`"package.module:ClassName"` -> the class, checked to subclass Verifier."""
    mod_name, sep, attr = path.partition(":")
    if not sep or not mod_name or not attr:
        raise PluginError(f"class {path!r} must be 'package.module:ClassName'")
    try:
        obj: Any = importlib.import_module(mod_name)
    except ImportError as e:
        raise PluginError(f"cannot import {mod_name!r}: {e}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise PluginError(f"{mod_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, Verifier)):
        raise PluginError(f"{path!r} is not a subclass of verifiers.base.Verifier")
    if obj.runs_in not in ("pool", "loop"):
        raise PluginError(f"{path!r}: runs_in must be 'pool' or 'loop', not {obj.runs_in!r}")
    if obj.runs_in == "pool" and obj.verify is Verifier.verify:
        raise PluginError(f"{path!r} is a pool verifier but does not override verify()")
    if obj.runs_in == "loop" and obj.averify_batch is Verifier.averify_batch:
        raise PluginError(f"{path!r} is a loop verifier but does not override averify_batch()")
    return obj


def _check_options(name: str, cls: type[Verifier], opts: dict[str, Any]) -> None:
    try:
        inspect.signature(cls).bind(**opts)
    except TypeError as e:
        raise PluginError(f"verifier {name!r} ({cls.__name__}): bad options: {e}") from None


def resolve_verifiers(
    spec: Mapping[str, Mapping[str, Any]], base: Mapping[str, Entry] | None = None
) -> dict[str, Entry]:
    """Config entries -> {name: (class, options)} for the reward server's table.

    `base` is the table the entries may refer to as composite parts (default: the
    registry with no options; the server passes its own table). Only the entries of
    `spec` are returned; the caller merges them into its table."""
    if base is None:
        from verifiers.registry import VERIFIERS

        base = {n: (c, {}) for n, c in VERIFIERS.items()}
    resolved: dict[str, Entry] = {}
    visiting: list[str] = []

    def lookup(name: str, ctx: str) -> Entry:
        if name in spec:
            return resolve(name)
        if name in base:
            return base[name]
        raise PluginError(f"{ctx}: unknown verifier {name!r}; known: "
                          f"{sorted(set(spec) | set(base))}")

    def resolve(name: str) -> Entry:
        if name in resolved:
            return resolved[name]
        if name in visiting:
            raise PluginError(f"cycle in composite verifiers: {' -> '.join([*visiting, name])}")
        visiting.append(name)
        entry = spec[name]
        if not isinstance(entry, Mapping):
            raise PluginError(f"verifier {name!r}: entry must be a table, got {type(entry).__name__}")
        entry = dict(entry)
        type_, class_path = entry.pop("type", None), entry.pop("class", None)
        opts = dict(entry.pop("options", None) or {})
        opts.update(entry)  # every other key is an option
        if (type_ is None) == (class_path is None):
            raise PluginError(f"verifier {name!r}: give exactly one of 'type' or 'class'")
        if class_path is not None:
            try:
                cls = import_verifier_class(str(class_path))
            except PluginError as e:
                raise PluginError(f"verifier {name!r}: {e}") from None
        elif type_ == "composite":
            cls, opts = _composite(name, opts, lookup)
        elif type_ in TYPES:
            cls = TYPES[type_]
        else:
            from verifiers.registry import VERIFIERS

            if type_ not in VERIFIERS:
                raise PluginError(f"verifier {name!r}: unknown type {type_!r}; known: "
                                  f"{sorted(set(TYPES) | set(VERIFIERS))}")
            cls = VERIFIERS[type_]
        _check_options(name, cls, opts)
        resolved[name] = (cls, opts)
        visiting.pop()
        return resolved[name]

    for name in spec:
        resolve(name)
    return resolved


def _composite(name: str, opts: dict[str, Any], lookup: Any) -> Entry:
    raw_parts = opts.pop("parts", None)
    if not isinstance(raw_parts, list) or not raw_parts:
        raise PluginError(f"composite {name!r}: 'parts' must be a non-empty list")
    parts: list[Part] = []
    for i, p in enumerate(raw_parts):
        ctx = f"composite {name!r} part {i}"
        if not isinstance(p, Mapping) or "verifier" not in p:
            raise PluginError(f"{ctx}: must be a table with 'verifier' and 'weight'")
        unknown = set(p) - _PART_KEYS
        if unknown:
            raise PluginError(f"{ctx}: unknown keys {sorted(unknown)}; allowed {sorted(_PART_KEYS)}")
        w = p.get("weight", 1.0)
        if isinstance(w, bool) or not isinstance(w, int | float):
            raise PluginError(f"{ctx}: weight {w!r} is not a number")
        cls, part_opts = lookup(str(p["verifier"]), ctx)
        label = str(p.get("label", p["verifier"]))
        key = p.get("reference_key")
        parts.append((label, cls, dict(part_opts), float(w), None if key is None else str(key)))
    labels = [p[0] for p in parts]
    if len(set(labels)) != len(labels):
        raise PluginError(f"composite {name!r}: part labels must be unique, got {labels} "
                          "(give repeated verifiers a 'label')")
    any_loop = any(p[1].runs_in == "loop" for p in parts)
    return (LoopCompositeVerifier if any_loop else CompositeVerifier), {**opts, "parts": parts}
