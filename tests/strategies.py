"""Hypothesis strategies built generically from struct declarations.

:class:`StrategyBuilder` walks a struct's field codecs (``mimisim.codec``)
and produces values that encode: integers within their width, byte strings
within their bounds, enum members, ``Select`` arms chosen by the tag drawn
earlier in the same struct, and nested structs. Structs that declare a
``_check`` only yield values that pass it (via ``assume``).

Why generic: wire structs are declared once, as data; the strategies should
be too, so a new struct is fuzzed without writing a strategy by hand. Only
codecs whose layout depends on *another* field in a way the codec itself does
not declare need a handler (the MLS ``AuthData`` and membership tag, which
depend on the enclosing PublicMessage).

Extension points, all per builder (``builder.replace(...)`` returns a copy):

* ``fields``: ``{(StructClass, "field"): fn(values, builder) -> strategy}``
  to pin one field, given the fields drawn before it.
* ``structs``: ``{StructClass: fn(builder) -> strategy}`` to replace a struct.
* ``codecs``: ``{CodecType: fn(codec, values, builder) -> strategy}``.

Sizes are kept small (``max_list``, ``max_bytes``) so deep MLS objects stay
fast; the fuzzing suite can raise them.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping
from typing import Any

from hypothesis import assume
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from mimisim import codec as C
from mimisim.mimi import wire as W
from mimisim.mls import structs as M

FieldFn = Callable[[Mapping[str, Any], "StrategyBuilder"], SearchStrategy[Any]]
StructFn = Callable[["StrategyBuilder"], SearchStrategy[Any]]
CodecFn = Callable[[Any, Mapping[str, Any], "StrategyBuilder"], SearchStrategy[Any]]

#: Returned by a handler when no value fits (e.g. a Select tag with no case).
NO_VALUE = st.nothing()


def _is_struct_codec(codec: Any) -> bool:
    return hasattr(codec, "cls") and hasattr(codec, "fields") and isinstance(codec, C.Codec)


@dataclasses.dataclass
class StrategyBuilder:
    """Builds strategies for struct classes and codecs; see module docstring."""

    max_list: int = 2
    max_bytes: int = 8
    fields: dict[tuple[type, str], FieldFn] = dataclasses.field(default_factory=dict)
    structs: dict[type, StructFn] = dataclasses.field(default_factory=dict)
    codecs: dict[type, CodecFn] = dataclasses.field(default_factory=dict)
    _cache: dict[Any, SearchStrategy[Any]] = dataclasses.field(default_factory=dict, repr=False)

    def replace(
        self,
        *,
        fields: Mapping[tuple[type, str], FieldFn] | None = None,
        structs: Mapping[type, StructFn] | None = None,
        codecs: Mapping[type, CodecFn] | None = None,
        **changes: Any,
    ) -> StrategyBuilder:
        """A copy with more overrides (merged over this builder's)."""
        return StrategyBuilder(
            max_list=changes.pop("max_list", self.max_list),
            max_bytes=changes.pop("max_bytes", self.max_bytes),
            fields={**self.fields, **(fields or {})},
            structs={**self.structs, **(structs or {})},
            codecs={**self.codecs, **(codecs or {})},
        )

    # ------------------------------------------------------------------ structs

    def struct(self, cls: type) -> SearchStrategy[Any]:
        """A strategy for instances of the struct class ``cls``."""
        key = ("struct", cls)
        if key not in self._cache:
            self._cache[key] = st.deferred(lambda: self._build_struct(cls))
        return self._cache[key]

    def _build_struct(self, cls: type) -> SearchStrategy[Any]:
        if cls in self.structs:
            return self.structs[cls](self)
        sc = C.as_codec(cls)
        plan: list[tuple[str, Callable[[Mapping[str, Any]], SearchStrategy[Any]]]] = []
        for name, fc in sc.fields:
            override = self.fields.get((cls, name))
            if override is not None:
                plan.append((name, lambda values, o=override: o(values, self)))
            elif _is_contextual(fc):
                plan.append((name, lambda values, c=fc: self.codec(c, values)))
            else:
                fixed = self.codec(fc, {})
                plan.append((name, lambda values, s=fixed: s))

        @st.composite
        def build(draw: st.DrawFn) -> Any:
            values: dict[str, Any] = {}
            for name, fn in plan:
                strat = fn(values)
                assume(strat is not NO_VALUE)
                values[name] = draw(strat)
            obj = cls(**values)
            check = getattr(obj, "_check", None)
            if check is not None:
                assume(check() is None)
            return obj

        return build()

    # ------------------------------------------------------------------ codecs

    def codec(self, codec: Any, values: Mapping[str, Any]) -> SearchStrategy[Any]:
        """A strategy for one codec, given the enclosing struct's drawn fields."""
        if isinstance(codec, type):
            return self.struct(codec)
        handler = next((self.codecs[t] for t in type(codec).__mro__ if t in self.codecs), None)
        if handler is not None:
            if type(codec) in _CONTEXTUAL:
                return handler(codec, values, self)
            hkey = ("handler", id(codec))
            if hkey not in self._cache:
                self._cache[hkey] = handler(codec, {}, self)
            return self._cache[hkey]
        if _is_struct_codec(codec):
            return self.struct(codec.cls)
        if isinstance(codec, C.Select):
            derive = getattr(codec, "derive", None)
            tag = derive(values) if derive is not None else values.get(codec.tag_field)
            if tag is None:
                return NO_VALUE
            case = codec._case(tag)
            if case is ...:
                return NO_VALUE
            return st.none() if case is None else self.codec(case, values)
        if isinstance(codec, C.Lazy):
            return self.codec(codec._get(), values)
        key = ("codec", id(codec))
        if key not in self._cache:
            self._cache[key] = self._plain(codec)
        return self._cache[key]

    def _plain(self, codec: Any) -> SearchStrategy[Any]:
        if isinstance(codec, C.EnumCodec):
            allowed = getattr(codec, "allowed", None)
            members = list(allowed) if allowed is not None else list(codec.enum_cls)
            strat: SearchStrategy[Any] = st.sampled_from(members)
            if not codec.closed:
                strat = st.one_of(strat, _uint(codec.width.limit))
            return strat
        if isinstance(codec, type(C.uint8)):
            return _uint(codec.limit)
        if isinstance(codec, C.Opaque):
            hi = min(codec.max_len, codec.min_len + self.max_bytes)
            return st.binary(min_size=codec.min_len, max_size=hi)
        if isinstance(codec, C.Fixed):
            return st.binary(min_size=codec.n, max_size=codec.n)
        if isinstance(codec, C.Vector):
            lo = getattr(codec, "min_items", 0)
            hi = max(lo, self.max_list if codec.max_items is None else min(codec.max_items, self.max_list))
            return st.lists(self.codec(codec.elem, {}), min_size=lo, max_size=hi)
        if isinstance(codec, C.Optional):
            return st.none() | self.codec(codec._inner, {})
        if isinstance(codec, C.Raw):
            return st.binary(max_size=self.max_bytes)
        raise TypeError(f"no strategy for codec {codec!r}; register one in StrategyBuilder.codecs")


def _is_contextual(codec: Any) -> bool:
    """Does the codec's strategy depend on the enclosing struct's values?"""
    return isinstance(codec, C.Select) or type(codec) in _CONTEXTUAL


def _uint(limit: int) -> SearchStrategy[int]:
    """Uniform integers plus the edges, where encoders tend to break."""
    return st.one_of(st.sampled_from([0, 1, limit - 1]), st.integers(0, limit - 1))


# ---------------------------------------------------------------------- MLS


def _field_codec(cls: type, name: str) -> Any:
    return dict(C.as_codec(cls).fields)[name]


_AuthDataCodec = type(_field_codec(M.PublicMessage, "auth"))
_MembershipTagCodec = type(_field_codec(M.PublicMessage, "membership_tag"))
_CONTEXTUAL: set[type] = {_AuthDataCodec, _MembershipTagCodec}


def _auth_data(codec: Any, values: Mapping[str, Any], b: StrategyBuilder) -> SearchStrategy[Any]:
    """FramedContentAuthData: confirmation_tag exactly for commits (RFC 9420 s.6.1)."""
    content = values["content"]
    sig = b.codec(C.opaque, {})
    if content.content_type == M.ContentType.commit:
        return st.builds(M.AuthData, sig, b.codec(C.opaque, {}))
    return st.builds(M.AuthData, sig, st.none())


def _membership_tag(codec: Any, values: Mapping[str, Any], b: StrategyBuilder) -> SearchStrategy[Any]:
    """membership_tag exactly for member senders (RFC 9420 s.6.2)."""
    if values["content"].sender.sender_type == M.SenderType.member:
        return b.codec(C.opaque, {})
    return st.none()


def _text(codec: Any, values: Mapping[str, Any], b: StrategyBuilder) -> SearchStrategy[str]:
    chars = st.characters(exclude_categories=("Cs",), exclude_characters=() if codec.allow_nul else ("\x00",))
    return st.text(chars, max_size=b.max_bytes)


def _kinded_message(codec: Any, values: Mapping[str, Any], b: StrategyBuilder) -> SearchStrategy[Any]:
    return st.one_of(*[mls_message(b, kind) for kind in sorted(codec.kinds)])


def mls_message(b: StrategyBuilder, kind: W.MessageKind) -> SearchStrategy[Any]:
    """MLSMessages of one :class:`~mimisim.mimi.wire.MessageKind` (cached per builder)."""
    key = ("kind", kind)
    if key not in b._cache:
        b._cache[key] = _mls_message(b, kind)
    return b._cache[key]


def _mls_message(b: StrategyBuilder, kind: W.MessageKind) -> SearchStrategy[Any]:
    wf = {
        W.MessageKind.application: M.WireFormat.private_message,
        W.MessageKind.proposal: M.WireFormat.public_message,
        W.MessageKind.commit: M.WireFormat.public_message,
        W.MessageKind.welcome: M.WireFormat.welcome,
    }[kind]
    fields: dict[tuple[type, str], FieldFn] = {(M.MLSMessage, "wire_format"): pin(wf)}
    if kind == W.MessageKind.application:
        fields[(M.PrivateMessage, "content_type")] = pin(M.ContentType.application)
    elif kind in (W.MessageKind.proposal, W.MessageKind.commit):
        fields[(M.FramedContent, "content_type")] = pin(M.ContentType(int(kind)))
    return b.replace(fields=fields).struct(M.MLSMessage)


def _app_data_dictionary(b: StrategyBuilder) -> SearchStrategy[Any]:
    """AppDataDictionary: component ids sorted and unique (its _check)."""
    ids = st.lists(_uint(1 << 16), max_size=b.max_list, unique=True).map(sorted)
    return ids.flatmap(
        lambda xs: st.tuples(*[b.codec(C.opaque, {}) for _ in xs]).map(
            lambda datas: M.AppDataDictionary([M.ComponentData(i, d) for i, d in zip(xs, datas, strict=True)])
        )
    )


def pin(*choices: Any) -> FieldFn:
    """A field override that draws one of ``choices``."""
    strat = st.sampled_from(choices)
    return lambda values, b: strat


#: Field pins that keep generated MLS objects valid without heavy filtering.
MLS_FIELDS: dict[tuple[type, str], FieldFn] = {
    (M.MLSMessage, "version"): pin(M.MLS10),
    (M.Credential, "credential_type"): pin(M.CredentialType.basic, M.CredentialType.x509),
}


def default_builder(**changes: Any) -> StrategyBuilder:
    """The builder the wire tests use: generic, with the handlers above."""
    return StrategyBuilder(
        fields=dict(MLS_FIELDS),
        structs={M.AppDataDictionary: _app_data_dictionary},
        codecs={
            _AuthDataCodec: _auth_data,
            _MembershipTagCodec: _membership_tag,
            W.Text: _text,
            W.KindedMessage: _kinded_message,
        },
        **changes,
    )


def enum_values(enum_cls: type[enum.IntEnum]) -> set[int]:
    return {int(m) for m in enum_cls}
