"""`gpudoctor rules list|show|lint`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from gpudoctor import exitcodes
from gpudoctor.commands.common import Group, format_option, rule_dirs_from, rules_option
from gpudoctor.errors import UsageError


@click.group(
    "rules",
    cls=Group,
    no_args_is_help=False,  # a missing sub-command is a two-line usage error, as elsewhere
    epilog="""\b
Examples:
  gpudoctor rules list --format json
  gpudoctor rules show GD-DRV-006
  gpudoctor rules lint /etc/gpudoctor/rules.d
""",
)
def command() -> None:
    """List, show and lint the rules."""


@command.command(
    "list",
    epilog="""\b
Examples:
  gpudoctor rules list
  gpudoctor rules list --rules /etc/gpudoctor/rules.d --format json
""",
)
@format_option("table", "json")
@rules_option
def list_rules(fmt: str, rule_dirs: tuple[str, ...]) -> int:
    """List every rule (shipped and site-local)."""
    from gpudoctor.knowledge import load_rules

    ruleset = load_rules(rule_dirs_from(rule_dirs))
    summaries = [rule.summary() for rule in ruleset]
    if fmt == "json":
        print(json.dumps(summaries, indent=2))
        return exitcodes.OK
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(summaries)} rules", show_lines=False)
    for column in ("id", "severity", "applies to", "title"):
        table.add_column(column, overflow="fold")
    for s in summaries:
        table.add_row(s["id"], s["severity"], s["applies_to"], s["title"])
    Console(soft_wrap=False).print(table)
    return exitcodes.OK


@command.command(
    "show",
    epilog="""\b
Examples:
  gpudoctor rules show GD-DRV-006
  gpudoctor rules show GD-SITE-001 --rules /etc/gpudoctor/rules.d
""",
)
@click.argument("rule_id")
@rules_option
def show_rule(rule_id: str, rule_dirs: tuple[str, ...]) -> int:
    """Show one rule as written, with the file it comes from."""
    import yaml

    from gpudoctor.knowledge import load_rules

    ruleset = load_rules(rule_dirs_from(rule_dirs))
    rule = ruleset.by_id.get(rule_id) or ruleset.by_id.get(rule_id.upper())
    if rule is None:
        raise UsageError(f"no rule with id {rule_id!r} (see `gpudoctor rules list`)")
    print(f"# {rule.file}")
    print(yaml.safe_dump(rule.raw, sort_keys=False, allow_unicode=True, width=100).rstrip())
    return exitcodes.OK


@command.command(
    "lint",
    short_help="Validate the shipped rule files and PATHS (files or directories).",
    epilog="""\b
Examples:
  gpudoctor rules lint
  gpudoctor rules lint site-rules.yaml /etc/gpudoctor/rules.d
""",
)
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
def lint(paths: tuple[Path, ...]) -> int:
    """Validate the shipped rule files and PATHS (files or directories); exit 65 on the first error."""
    from gpudoctor.knowledge import load_rules
    from gpudoctor.knowledge.loader import KINDS, load_kind, shipped_root

    targets = [shipped_root(), *paths]
    counts = {kind: sum(len(items) for _, items in load_kind(kind, targets)) for kind in list(KINDS)}
    ruleset = load_rules(list(paths))  # also checks id collisions and overrides
    shown = ", ".join(f"{n} {kind}" for kind, n in counts.items() if n)
    print(f"ok: {len(ruleset)} rules in use ({shown})")
    return exitcodes.OK
