"""An import-linter contract type for a layer that holds some modules of a package, not all of them.

``layer_only`` (pyproject.toml): in ``container``, only the modules named in ``layer`` may import the
``forbidden_modules`` and the layer itself; every *other* module of the container, including one added
tomorrow, may not, directly or through a chain. A layer module that does not exist yet is allowed in
advance. Built on import-linter's forbidden contract, whose checks and report it reuses.
"""

from __future__ import annotations

from grimp import ImportGraph
from importlinter import Contract, ContractCheck, fields
from importlinter.contracts.forbidden import ForbiddenContract


class LayerOnlyContract(Contract):
    type_name = "layer_only"

    container = fields.StringField()
    layer = fields.ListField(subfield=fields.StringField())
    forbidden_modules = fields.ListField(subfield=fields.StringField())

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        layer = {f"{self.container}.{tail}" for tail in self.layer}
        others = sorted(graph.find_children(self.container) - layer)
        self._forbidden = ForbiddenContract(
            self.name,
            self.session_options,
            {
                "source_modules": others,
                "forbidden_modules": [*self.forbidden_modules, *sorted(layer & graph.modules)],
            },
        )
        return self._forbidden.check(graph, verbose)

    def render_broken_contract(self, check: ContractCheck) -> None:
        self._forbidden.render_broken_contract(check)
