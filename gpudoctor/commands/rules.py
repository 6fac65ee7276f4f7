"""`gpudoctor rules list|show|lint`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gpudoctor import exitcodes
from gpudoctor.commands.common import add_format, add_rules
from gpudoctor.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = "%(prog)s [OPTIONS] COMMAND [ARGS]..."
    parser.description = "List, show and lint the rules."
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", prog=parser.prog, required=True)
    lint_parser = commands.add_parser(
        "lint",
        help="Validate the shipped rule files and PATHs (files or directories).",
        usage="%(prog)s [OPTIONS] [PATHS]...",
        description="Validate the shipped rule files and PATHs (files or directories); exit 65 on the first error.",
    )
    lint_parser.add_argument("paths", nargs="*", type=Path, metavar="PATHS", help=argparse.SUPPRESS)
    lint_parser.set_defaults(handler=lint)
    list_parser = commands.add_parser(
        "list",
        help="List every rule (shipped and site-local).",
        usage="%(prog)s [OPTIONS]",
        description="List every rule (shipped and site-local).",
    )
    add_format(list_parser, "table", "json")
    add_rules(list_parser)
    list_parser.set_defaults(handler=list_rules)
    show_parser = commands.add_parser(
        "show",
        help="Show one rule as written, with the file it comes from.",
        usage="%(prog)s [OPTIONS] RULE_ID",
        description="Show one rule as written, with the file it comes from.",
    )
    show_parser.add_argument("rule_id", metavar="RULE_ID", help=argparse.SUPPRESS)
    add_rules(show_parser)
    show_parser.set_defaults(handler=show_rule)


def run(args: argparse.Namespace) -> int:
    code: int = args.handler(args)
    return code


def list_rules(args: argparse.Namespace) -> int:
    """List every rule (shipped and site-local)."""
    from gpudoctor.commands.ruledirs import rule_dirs_from
    from gpudoctor.knowledge import load_rules

    ruleset = load_rules(rule_dirs_from(args.rule_dirs))
    summaries = [rule.summary() for rule in ruleset]
    if args.fmt == "json":
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


def show_rule(args: argparse.Namespace) -> int:
    """Show one rule as written, with the file it comes from."""
    import yaml

    from gpudoctor.commands.ruledirs import rule_dirs_from
    from gpudoctor.knowledge import load_rules

    rule_id: str = args.rule_id
    ruleset = load_rules(rule_dirs_from(args.rule_dirs))
    rule = ruleset.by_id.get(rule_id) or ruleset.by_id.get(rule_id.upper())
    if rule is None:
        raise UsageError(f"no rule with id {rule_id!r} (see `gpudoctor rules list`)")
    print(f"# {rule.file}")
    print(yaml.safe_dump(rule.raw, sort_keys=False, allow_unicode=True, width=100).rstrip())
    return exitcodes.OK


def lint(args: argparse.Namespace) -> int:
    """Validate the shipped rule files and PATHs (files or directories); exit 65 on the first error."""
    from gpudoctor.knowledge import load_rules
    from gpudoctor.knowledge.loader import KINDS, load_kind, shipped_root

    paths: list[Path] = args.paths
    targets = [shipped_root(), *paths]
    counts = {kind: sum(len(items) for _, items in load_kind(kind, targets)) for kind in list(KINDS)}
    ruleset = load_rules(paths)  # also checks id collisions and overrides
    shown = ", ".join(f"{n} {kind}" for kind, n in counts.items() if n)
    print(f"ok: {len(ruleset)} rules in use ({shown})")
    return exitcodes.OK
