"""Record classes for the fact model and the modules preflight and scan load.

Why not dataclasses: importing it pulls in inspect (ast, dis, tokenize: ~8 ms on our
2-core CI machine) and each class compiles generated __init__/__repr__/__eq__ source
(~0.3 ms a class). The fact model and the modules `gpudoctor preflight` loads define
~40 classes, and preflight must stay within 3x of a Go binary (~60 ms in all). A record
shares one generic __init__/__repr__/__eq__ driven by a per-class field table built from
the annotations: nothing is compiled. The rest of the code base (kernels, explain,
fleet) keeps dataclasses, which cost nothing on those paths.

    @record
    class GpuFacts:
        index: int                                  # no default: required
        name: str | None = None                     # immutable default
        unknown: dict[str, str] = field(default_factory=dict)
        password: str | None = field(default=None, repr=False)

    @record(frozen=True)                            # immutable and hashable

Where it matters the behaviour is dataclasses': arguments by keyword or in field order,
TypeError for unknown, missing or repeated arguments, fields inherited from record bases,
a required field may not follow one with a default, mutable defaults are refused,
equality compares the class and every field, an unfrozen record is unhashable, a frozen
one hashes its fields and refuses assignment.
"""

from __future__ import annotations

from collections.abc import Callable

TYPE_CHECKING = False  # typing is not imported at run time: see docs/startup.md
if TYPE_CHECKING:
    from typing import Any, TypeVar, dataclass_transform

    T = TypeVar("T")
else:

    def dataclass_transform(**_options: object) -> Callable[[Callable[..., object]], Callable[..., object]]:
        """Only type checkers read typing.dataclass_transform; at run time it changes nothing."""
        return lambda decorated: decorated


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class _Field:
    __slots__ = ("default", "default_factory", "repr")

    def __init__(self, default: Any, default_factory: Any, repr: bool) -> None:  # noqa: A002 - dataclasses' name
        self.default = default
        self.default_factory = default_factory
        self.repr = repr


def field(*, default: Any = MISSING, default_factory: Callable[[], Any] = MISSING, repr: bool = True) -> Any:  # noqa: A002
    """A field's default (or a factory for a fresh one per record) and whether repr shows it."""
    if default is not MISSING and default_factory is not MISSING:
        raise ValueError("cannot specify both default and default_factory")
    return _Field(default, default_factory, repr)


class FrozenRecordError(AttributeError):
    """Assignment to a field of a frozen record."""


class RecordSpec:
    """A record class's fields, in order, with what __init__ needs to fill them."""

    __slots__ = ("names", "name_set", "required", "defaults", "factories", "shown", "frozen")

    def __init__(self, frozen: bool) -> None:
        self.names: tuple[str, ...] = ()
        self.name_set: frozenset[str] = frozenset()
        self.required: frozenset[str] = frozenset()
        self.defaults: dict[str, Any] = {}
        self.factories: tuple[tuple[str, Callable[[], Any]], ...] = ()
        self.shown: tuple[str, ...] = ()
        self.frozen = frozen


def is_record(obj: Any) -> bool:
    """True for a record class or instance (the fact model's is_dataclass)."""
    return isinstance(getattr(obj, "__record__", None), RecordSpec)


def record_fields(cls: type) -> RecordSpec:
    spec: RecordSpec = cls.__record__  # type: ignore[attr-defined]
    return spec


@dataclass_transform(field_specifiers=(field,))
def record(cls: type[T] | None = None, *, frozen: bool = False) -> Any:
    """Make `cls` a record (see the module docstring); `@record` or `@record(frozen=True)`."""

    def wrap(klass: type[T]) -> type[T]:
        return _build(klass, frozen)

    return wrap if cls is None else wrap(cls)


_MUTABLE = (list, dict, set, bytearray)


def _build(cls: type[T], frozen: bool) -> type[T]:
    spec = RecordSpec(frozen)
    names: list[str] = []
    defaults: dict[str, Any] = {}
    factories: dict[str, Callable[[], Any]] = {}
    hidden: set[str] = set()
    for base in reversed(cls.__mro__[1:]):
        inherited = base.__dict__.get("__record__")
        if isinstance(inherited, RecordSpec):
            names.extend(n for n in inherited.names if n not in names)
            defaults.update(inherited.defaults)
            factories.update(inherited.factories)
            hidden.update(n for n in inherited.names if n not in inherited.shown)
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():
        if str(annotation).startswith(("ClassVar", "typing.ClassVar")):
            continue
        if name not in names:
            names.append(name)
        value = cls.__dict__.get(name, MISSING)
        defaults.pop(name, None)
        factories.pop(name, None)
        if isinstance(value, _Field):
            if not value.repr:
                hidden.add(name)
            if value.default_factory is not MISSING:
                factories[name] = value.default_factory
                delattr(cls, name)
                continue
            value = value.default
            if value is MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, value)
        if value is MISSING:
            continue
        if isinstance(value, _MUTABLE):
            raise ValueError(
                f"{cls.__name__}.{name}: mutable default {type(value).__name__}; use default_factory"
            )
        defaults[name] = value
    seen_default = False
    for name in names:
        has_default = name in defaults or name in factories
        if seen_default and not has_default:
            raise TypeError(f"{cls.__name__}: required field {name!r} follows a field with a default")
        seen_default = seen_default or has_default
    spec.names = tuple(names)
    spec.name_set = frozenset(names)
    spec.required = frozenset(n for n in names if n not in defaults and n not in factories)
    spec.defaults = {n: defaults[n] for n in names if n in defaults}
    spec.factories = tuple((n, factories[n]) for n in names if n in factories)
    spec.shown = tuple(n for n in names if n not in hidden)
    cls.__record__ = spec  # type: ignore[attr-defined]
    own = cls.__dict__
    if "__init__" not in own:
        cls.__init__ = _init  # type: ignore[misc]
    if "__repr__" not in own:
        cls.__repr__ = _repr  # type: ignore[method-assign]
    if "__eq__" not in own:
        cls.__eq__ = _eq  # type: ignore[method-assign]
    if frozen:
        cls.__setattr__ = _refuse  # type: ignore[method-assign]
        cls.__delattr__ = _refuse  # type: ignore[method-assign]
        if "__hash__" not in own:
            cls.__hash__ = _hash  # type: ignore[method-assign]
    elif "__hash__" not in own:
        cls.__hash__ = None  # type: ignore[assignment]
    return cls


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    spec: RecordSpec = self.__record__
    name = type(self).__name__
    if args:
        if len(args) > len(spec.names):
            raise TypeError(
                f"{name}() takes {len(spec.names)} positional arguments but {len(args)} were given"
            )
        for field_name, value in zip(spec.names, args, strict=False):
            if field_name in kwargs:
                raise TypeError(f"{name}() got multiple values for argument {field_name!r}")
            kwargs[field_name] = value
    if not spec.name_set.issuperset(kwargs):
        unexpected = sorted(set(kwargs) - spec.name_set)
        raise TypeError(f"{name}() got an unexpected keyword argument {unexpected[0]!r}")
    if not spec.required.issubset(kwargs):
        missing = [n for n in spec.names if n in spec.required and n not in kwargs]
        raise TypeError(f"{name}() missing required argument: {', '.join(repr(m) for m in missing)}")
    values = self.__dict__
    values.update(spec.defaults)
    for field_name, make in spec.factories:
        if field_name not in kwargs:
            values[field_name] = make()
    values.update(kwargs)


def _repr(self: Any) -> str:
    shown = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__record__.shown)
    return f"{type(self).__qualname__}({shown})"


def _values(obj: Any) -> tuple[Any, ...]:
    return tuple(getattr(obj, n) for n in obj.__record__.names)


def _eq(self: Any, other: Any) -> Any:
    if other.__class__ is not self.__class__:
        return NotImplemented
    return _values(self) == _values(other)


def _hash(self: Any) -> int:
    return hash(_values(self))


def _refuse(self: Any, name: str, *value: Any) -> None:
    raise FrozenRecordError(f"cannot assign to field {name!r} of frozen {type(self).__name__}")
