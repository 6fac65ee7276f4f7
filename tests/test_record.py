"""gpudoctor.record behaves like dataclasses where the fact model relies on it."""

from __future__ import annotations

import pytest

from gpudoctor.record import FrozenRecordError, field, is_record, record, record_fields
from tests.support.imports import modules_loaded_by


@record
class Gpu:
    index: int
    name: str | None = None
    links: list[int] = field(default_factory=list)
    secret: str | None = field(default=None, repr=False)


@record(frozen=True)
class Key:
    name: str
    version: str = "1"


@record
class BigGpu(Gpu):
    memory_mib: int | None = None


def test_arguments_by_keyword_and_position_with_defaults() -> None:
    gpu = Gpu(3, "A100")
    assert (gpu.index, gpu.name, gpu.links, gpu.secret) == (3, "A100", [], None)
    assert Gpu(index=3, name="A100") == gpu


def test_default_factory_gives_each_record_its_own_value() -> None:
    first, second = Gpu(0), Gpu(1)
    first.links.append(7)
    assert second.links == []


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: Gpu(), "missing required argument: 'index'"),
        (lambda: Gpu(1, index=2), "multiple values for argument 'index'"),
        (lambda: Gpu(1, colour="red"), "unexpected keyword argument 'colour'"),
        (lambda: Gpu(1, "a", [], "s", "extra"), "takes 4 positional arguments but 5 were given"),
    ],
    ids=["missing", "twice", "unknown", "too-many"],
)
def test_bad_arguments_are_type_errors(call: object, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        call()  # type: ignore[operator]


def test_equality_compares_class_and_fields_and_unfrozen_is_unhashable() -> None:
    assert Gpu(1, "x") == Gpu(1, "x")
    assert Gpu(1, "x") != Gpu(1, "y")
    assert Gpu(1) != BigGpu(1)
    with pytest.raises(TypeError):
        hash(Gpu(1))


def test_repr_shows_fields_in_order_but_not_hidden_ones() -> None:
    text = repr(Gpu(2, "H100", secret="pw-123"))
    assert text == "Gpu(index=2, name='H100', links=[])"
    assert "pw-123" not in text


def test_frozen_records_refuse_assignment_and_hash_by_fields() -> None:
    key = Key("cuda")
    with pytest.raises(FrozenRecordError, match="frozen Key"):
        key.name = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del key.version  # type: ignore[misc]
    assert {Key("cuda"): 1}[Key("cuda", "1")] == 1
    assert hash(Key("a")) != hash(Key("b"))


def test_inherited_fields_come_first() -> None:
    gpu = BigGpu(1, memory_mib=80)
    assert record_fields(BigGpu).names == ("index", "name", "links", "secret", "memory_mib")
    assert (gpu.index, gpu.memory_mib) == (1, 80)
    assert is_record(gpu) and is_record(BigGpu) and not is_record(object())


def test_class_definitions_dataclasses_would_refuse_are_refused() -> None:
    with pytest.raises(ValueError, match="mutable default list"):

        @record
        class Shared:
            items: list[int] = []  # noqa: RUF012

    with pytest.raises(TypeError, match="required field 'b' follows a field with a default"):

        @record
        class Order:
            a: int = 0
            b: int  # type: ignore[misc]


def test_importing_the_fact_model_does_not_import_dataclasses_or_inspect() -> None:
    assert modules_loaded_by("import gpudoctor.facts", ("dataclasses", "inspect")) == []
