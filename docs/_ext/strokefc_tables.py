"""Documentation generated from the code, so that it cannot drift from what strokefc does.

``{column-table}``: the description and units of every TSV column strokefc writes
(``workflows.columns``, the same dictionary the sidecars are written from). ``{methods-text}``: the
methods text strokefc writes into ``logs/CITATION.md`` for the default parameters, read from the
workflow graphs as a run does (``workflows.participant.describe_participant``,
``workflows.group.describe_group``).
"""

import re
from typing import Any, ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective
from strokefc_results import include_results


def _row(cells: list[str]) -> nodes.row:
    row = nodes.row()
    for text in cells:
        entry = nodes.entry()
        entry += nodes.paragraph(text=text)
        row += entry
    return row


class ColumnTable(SphinxDirective):
    """A table of :data:`workflows.columns.COLUMNS`: column, description, units."""

    def run(self) -> list[nodes.Node]:
        from workflows.columns import COLUMNS, PATTERNS

        header = ["Column", "Description", "Units"]
        table = nodes.table()
        group = nodes.tgroup(cols=len(header))
        table += group
        for width in (2, 6, 1):
            group += nodes.colspec(colwidth=width)
        head = nodes.thead()
        head += _row(header)
        group += head
        body = nodes.tbody()
        for name, meta in sorted(COLUMNS.items()):
            body += _row([name, str(meta.get("Description", "")), str(meta.get("Units", ""))])
        for pattern, meta in PATTERNS:
            body += _row(
                [f"(pattern) {pattern}", str(meta.get("Description", "")), str(meta.get("Units", ""))]
            )
        group += body
        return [table]


class MethodsText(SphinxDirective):
    """The methods paragraph of one level (``:level: participant`` or ``group``) for default parameters;
    ``[@key]`` citations are shown as ``(key)``."""

    option_spec: ClassVar[dict[str, Any]] = {"level": directives.unchanged_required}

    def run(self) -> list[nodes.Node]:
        from workflows.params import DenoiseParams, GroupParams, QCParams, SeedParams, WindowParams

        if self.options.get("level") == "group":
            from workflows.group import describe_group

            text = describe_group(GroupParams())
        else:
            from workflows.participant import describe_participant

            text = describe_participant(
                denoise=DenoiseParams(), seed=SeedParams(), window=WindowParams(), qc=QCParams()
            )
        text = re.sub(r"\[@([\w-]+)\]", r"(\1)", text)
        container = nodes.container(classes=["methods-text"])
        self.state.nested_parse(
            StringList(text.splitlines(), source="methods"), self.content_offset, container
        )
        return [container]


def setup(app: Any) -> dict[str, Any]:
    app.connect("source-read", include_results)
    app.add_directive("column-table", ColumnTable)
    app.add_directive("methods-text", MethodsText)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
