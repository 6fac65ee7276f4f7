"""Schema of `kind: signatures` files and their compilation into `Signature` objects.

A signature names one known failure by the messages it prints:

```yaml
kind: signatures
signatures:
  - id: GD-LOG-001
    title: CUDA runtime newer than the driver
    severity: fail                   # fail | warn | info
    patterns: [regex, ...]           # all required (each on some line of the log)
    context: [regex, ...]            # optional: only capture values when present
    exclude: [regex, ...]            # a line matching one of these is not evidence
    convert: {name: cuda_tag}        # normalise a captured value (see CONVERTERS)
    cause: "... {captured.name} ..." # templates over `captured.*`
    fix: "..."
    refs: [https://...]              # or `source: field report`
    source: vendor documentation
    correlate:                       # optional: sharpen the diagnosis with node facts
      - when: <condition over node facts and captured.*, docs/rules.md>
        severity: fail
        message: "... {gpu.name} ... {captured.sm} ..."
        fix: "..."
```

Captured values come from named groups `(?P<name>...)`; each placeholder in a
template must be a group of the signature's patterns, so a typo is a load-time
error, not a silent "unknown" in front of a user.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gpudoctor.explain.literals import every_necessary_literal, necessary_literals
from gpudoctor.knowledge.conditions import Condition, ConditionError, compile_condition
from gpudoctor.knowledge.schema import (
    RuleFileError,
    check_keys,
    compile_items,
    one_of,
    optional_bool,
    optional_str,
    refs_list,
    required_str,
)
from gpudoctor.knowledge.template import check_template
from gpudoctor.versions import count_from

if TYPE_CHECKING:
    from gpudoctor.explain.catalog import Catalog

SIGNATURE_ID = re.compile(r"^GD-[A-Z0-9]+-\d{3,5}$")
SEVERITIES = ("fail", "warn", "info")
REGEX_FLAGS = re.IGNORECASE
CAPTURED = "captured"

_FIELDS = {
    "id",
    "title",
    "severity",
    "patterns",
    "context",
    "exclude",
    "convert",
    "cause",
    "fix",
    "refs",
    "source",
    "notes",
    "override",
    "correlate",
    "examples",
    "generic",
}
_PATTERN_FIELDS = {"regex", "literal"}
_CORRELATE_FIELDS = {"when", "severity", "message", "fix", "refs"}
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")


def _cuda_tag(value: str) -> str:
    """'cu124' / '124' / '12040' -> '12.4' (the CUDA version a wheel or driver names)."""
    digits = value.lower().removeprefix("cu")
    number = count_from(digits)
    if len(digits) >= 4 and number is not None:  # cudaDriverGetVersion form: 12040
        return f"{number // 1000}.{number % 1000 // 10}"
    if len(digits) == 3 and digits.isdigit():
        return f"{digits[:2]}.{digits[2]}"
    if len(digits) == 2 and digits.isdigit():
        return f"{digits[0]}.{digits[1]}"
    return value


def _compute_capability(value: str) -> str:
    """'sm_120' / '120' / '89' / '8.9' -> '12.0' / '8.9' (nvidia-smi's compute capability form)."""
    digits = value.lower().removeprefix("sm_").removeprefix("compute_").rstrip("af")
    if "." in digits:
        return digits
    if digits.isdigit() and len(digits) >= 2:
        return f"{digits[:-1]}.{digits[-1]}"
    return value


def _sm_list(value: str) -> str:
    """'sm_50 sm_60 sm_70' -> '5.0, 6.0, 7.0'."""
    return ", ".join(_compute_capability(v) for v in re.findall(r"sm_\d+[af]?", value))


def _pci(value: str) -> str:
    return value.upper()


CONVERTERS: dict[str, Callable[[str], str]] = {
    "cuda_tag": _cuda_tag,
    "compute_capability": _compute_capability,
    "sm_list": _sm_list,
    "pci": _pci,
}


@dataclass
class Pattern:
    regex: re.Pattern[str]
    literals: list[str]  # lower-cased; a matching line contains one of them
    required: bool
    every: tuple[str, ...] = ()  # lower-cased; a matching line contains all of them


@dataclass
class Correlation:
    condition: Condition
    severity: str
    message: str
    fix: str | None
    refs: list[str]
    raw: dict[str, Any]


@dataclass
class Signature:
    id: str
    title: str
    severity: str
    patterns: list[Pattern]  # required first, then context
    exclude: list[re.Pattern[str]]
    convert: dict[str, Callable[[str], str]]
    cause: str
    fix: str
    refs: list[str]
    source: str
    file: str
    notes: str | None = None
    override: bool = False
    correlate: list[Correlation] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    # A generic cause (a kernel fault, any library status): reported after the specific ones.
    generic: bool = False
    # A vendor code family (gpudoctor.explain.catalog): each match resolves to one entry.
    catalog: Catalog | None = None

    @property
    def required_count(self) -> int:
        return sum(1 for p in self.patterns if p.required)

    @property
    def tier(self) -> int:
        """Report order: specific hand-written causes (0), generic ones (1), catalog entries (2)."""
        return 2 if self.catalog is not None else 1 if self.generic else 0

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "severity": self.severity,
            "fix": self.fix,
            "refs": list(self.refs),
            "source": self.source,
        }


def validate_signatures_document(doc: dict[str, Any], path: str) -> list[Signature]:
    if "catalog" in doc:
        from gpudoctor.explain.catalog import compile_catalog

        check_keys(doc, {"kind", "catalog"}, None, "")
        return [compile_catalog(doc["catalog"], path)]
    return compile_items(doc, path, "signatures", "signature", compile_signature)


_TOO_DEEP = "invalid regular expression: groups nested too deeply"


def _compile_regex(text: Any, where: str, item_id: str) -> re.Pattern[str]:
    if not isinstance(text, str) or not text:
        raise RuleFileError(item_id, where, "expected a non-empty regular expression")
    try:
        return re.compile(text, REGEX_FLAGS)
    except re.error as exc:
        raise RuleFileError(item_id, where, f"invalid regular expression: {exc}") from None
    except RecursionError:  # re's parser recurses once per group: "(" * 500
        raise RuleFileError(item_id, where, _TOO_DEEP) from None


def compile_pattern(spec: Any, where: str, item_id: str, required: bool) -> Pattern:
    literal: str | None = None
    if isinstance(spec, dict):
        check_keys(spec, _PATTERN_FIELDS, item_id, f"{where}.")
        literal = optional_str(spec, "literal", item_id)
        spec = spec.get("regex")
    regex = _compile_regex(spec, where, item_id)
    if literal is not None:
        if literal.lower() not in regex.pattern.lower():
            raise RuleFileError(item_id, f"{where}.literal", "must be a substring of the regex")
        literals = [literal.lower()]
    else:
        try:
            found = necessary_literals(regex.pattern)
            every = tuple(every_necessary_literal(regex.pattern))
        except RecursionError:
            raise RuleFileError(item_id, where, _TOO_DEEP) from None
        if found is None:
            raise RuleFileError(
                item_id,
                where,
                "no literal text of 3+ characters that every match must contain; add one, or give `literal:`",
            )
        literals = found
        return Pattern(regex=regex, literals=literals, required=required, every=every)
    return Pattern(regex=regex, literals=literals, required=required)


def _pattern_list(item: dict[str, Any], key: str, item_id: str, required: bool) -> list[Pattern]:
    specs = item.get(key, [])
    if isinstance(specs, (str, dict)):
        specs = [specs]
    if not isinstance(specs, list):
        raise RuleFileError(item_id, key, "expected a list of regular expressions")
    return [compile_pattern(spec, f"{key}[{i}]", item_id, required) for i, spec in enumerate(specs)]


def placeholders_known(
    text: str,
    where: str,
    groups: set[str],
    item_id: str,
    facts: bool = False,
    extra_heads: tuple[str, ...] = (),
) -> None:
    """Templates may name captured groups (and `extra_heads`, e.g. a catalog's `entry`);
    correlation templates may also name facts."""
    for match in _PLACEHOLDER.finditer(text):
        inner = match.group(1)
        if inner is None:
            continue
        for alternative in (a.strip() for a in inner.split("|")):
            head, _, name = alternative.partition(".")
            if head == CAPTURED:
                if name not in groups:
                    known = ", ".join(sorted(groups)) or "none"
                    raise RuleFileError(
                        item_id, where, f"{{{alternative}}} is not a captured group (groups: {known})"
                    )
            elif head in extra_heads:
                continue
            elif not facts and not (alternative[:1] in "'\"" and len(alternative) > 1):
                raise RuleFileError(
                    item_id, where, f"{{{alternative}}}: only {{captured.NAME}} is known here"
                )


def _compile_correlation(spec: Any, where: str, item_id: str, groups: set[str]) -> Correlation:
    if not isinstance(spec, dict):
        raise RuleFileError(item_id, where, "a correlation must be a mapping")
    check_keys(spec, _CORRELATE_FIELDS, item_id, f"{where}.")
    severity = one_of(spec, "severity", SEVERITIES, item_id, f"{where}.severity")
    if "when" not in spec:
        raise RuleFileError(item_id, f"{where}.when", "missing (the condition over node facts)")
    try:
        condition = compile_condition(spec["when"], f"{where}.when")
        message = check_template(spec.get("message"), f"{where}.message")
        fix = check_template(spec["fix"], f"{where}.fix") if "fix" in spec else None
    except ConditionError as exc:
        raise RuleFileError(item_id, exc.where, exc.message) from None
    placeholders_known(message, f"{where}.message", groups, item_id, facts=True)
    if fix is not None:
        placeholders_known(fix, f"{where}.fix", groups, item_id, facts=True)
    refs = refs_list(spec, item_id, None)
    return Correlation(condition=condition, severity=severity, message=message, fix=fix, refs=refs, raw=spec)


def compile_signature(item: Any, path: str, index: int) -> Signature:
    if not isinstance(item, dict):
        raise RuleFileError(None, f"signatures[{index}]", "a signature must be a mapping")
    item_id = item.get("id")
    if not isinstance(item_id, str) or not SIGNATURE_ID.match(item_id):
        raise RuleFileError(
            None, f"signatures[{index}].id", f"expected an id like GD-LOG-001, got {item_id!r}"
        )
    check_keys(item, _FIELDS, item_id, "")
    severity = one_of(item, "severity", SEVERITIES, item_id)
    required = _pattern_list(item, "patterns", item_id, required=True)
    if not required:
        raise RuleFileError(item_id, "patterns", "needs at least one regular expression")
    patterns = required + _pattern_list(item, "context", item_id, required=False)
    exclude = [
        _compile_regex(text, f"exclude[{i}]", item_id) for i, text in enumerate(item.get("exclude", []))
    ]
    groups = {name for p in patterns for name in p.regex.groupindex}
    convert_spec = item.get("convert", {})
    if not isinstance(convert_spec, dict):
        raise RuleFileError(item_id, "convert", "expected a mapping of group -> converter")
    convert: dict[str, Callable[[str], str]] = {}
    for name, converter in convert_spec.items():
        if name not in groups:
            raise RuleFileError(item_id, f"convert.{name}", "not a captured group of the patterns")
        if not isinstance(converter, str) or converter not in CONVERTERS:
            raise RuleFileError(
                item_id, f"convert.{name}", f"unknown converter (known: {', '.join(CONVERTERS)})"
            )
        convert[name] = CONVERTERS[converter]
    source = required_str(item, "source", item_id)
    refs = refs_list(item, item_id, source)
    override = optional_bool(item, "override", item_id)
    try:
        cause = check_template(item.get("cause"), "cause")
        fix = check_template(item.get("fix"), "fix")
    except ConditionError as exc:
        raise RuleFileError(item_id, exc.where, exc.message) from None
    placeholders_known(cause, "cause", groups, item_id, facts=False)
    placeholders_known(fix, "fix", groups, item_id, facts=False)
    correlate_spec = item.get("correlate", [])
    if not isinstance(correlate_spec, list):
        raise RuleFileError(item_id, "correlate", "expected a list of correlations")
    correlate = [
        _compile_correlation(spec, f"correlate[{i}]", item_id, groups)
        for i, spec in enumerate(correlate_spec)
    ]
    return Signature(
        id=item_id,
        title=required_str(item, "title", item_id),
        severity=severity,
        patterns=patterns,
        exclude=exclude,
        convert=convert,
        cause=cause,
        fix=fix,
        refs=refs,
        source=source,
        file=str(path),
        notes=optional_str(item, "notes", item_id),
        override=override,
        correlate=correlate,
        raw=item,
        generic=optional_bool(item, "generic", item_id),
    )
