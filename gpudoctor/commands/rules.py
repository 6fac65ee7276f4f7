"""`gpudoctor rules list|show|lint`."""

from __future__ import annotations

import io
import json
from pathlib import Path

import click

from gpudoctor import exitcodes
from gpudoctor.commands.common import Group, format_option, rule_dirs_from, rules_option, write_text
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
    """List, show and lint the rules and log signatures."""


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
    """List every rule and log signature (shipped and site-local)."""
    from gpudoctor.explain import load_signatures
    from gpudoctor.explain import summaries as signature_summaries
    from gpudoctor.knowledge import load_rules

    dirs = rule_dirs_from(rule_dirs)
    ruleset = load_rules(dirs)
    # One knowledge base: node/image rules, then the log signatures and catalog entries `explain` prints.
    summaries = [rule.summary() for rule in ruleset] + signature_summaries(load_signatures(dirs))
    if fmt == "json":
        write_text(json.dumps(summaries, indent=2), None)
        return exitcodes.OK
    from rich.table import Table

    from gpudoctor.report.style import console

    table = Table(title=f"{len(summaries)} rules and signatures", show_lines=False)
    for column in ("id", "severity", "applies to", "title"):
        table.add_column(column, overflow="fold")
    for s in summaries:
        table.add_row(s["id"], s["severity"], s["applies_to"], s["title"])
    # Rendered first, then written like every command's output (a full disk is exit 73).
    buffer = io.StringIO()
    console(buffer).print(table)
    write_text(buffer.getvalue(), None)
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
    """Show one rule or log signature as written, with the file it comes from."""
    import yaml

    from gpudoctor.knowledge import load_rules

    dirs = rule_dirs_from(rule_dirs)
    ruleset = load_rules(dirs)
    rule = ruleset.by_id.get(rule_id) or ruleset.by_id.get(rule_id.upper())
    if rule is not None:
        file, document = rule.file, rule.raw
    else:
        from gpudoctor.explain import load_signatures, show_document

        found = show_document(load_signatures(dirs), rule_id)
        if found is None:
            raise UsageError(f"no rule or signature with id {rule_id!r} (see `gpudoctor rules list`)")
        file, document = found
    write_text(f"# {file}\n" + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100), None)
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
    write_text(f"ok: {len(ruleset)} rules in use ({shown})", None)
    return exitcodes.OK
