"""Self-contained HTML pages (fleet and node reports) rendered with Jinja2.

One file, nothing fetched when it is opened: the stylesheet and the few lines of script are
inline, no font, image or CDN. Every value is escaped by Jinja2's autoescape (hostnames,
product names and messages come from untrusted report files); refs become links only when
they are http(s) URLs. Templates ship in gpudoctor/report/templates/.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from gpudoctor.report.style import SEVERITY_SYMBOL

if TYPE_CHECKING:
    import jinja2


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("gpudoctor.report", "templates"),
        autoescape=True,  # every template, whatever its file name
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["symbol"] = lambda verdict: SEVERITY_SYMBOL.get(str(verdict), "")
    env.tests["link"] = lambda ref: str(ref).startswith(("https://", "http://"))
    return env


def render_page(template: str, **context: Any) -> str:
    from gpudoctor import __version__

    return environment().get_template(template).render(version=__version__, **context)
