"""TemplateFlow's template names read from its folder names, so that importing niworkflows' sink does not
index TemplateFlow.

niworkflows' sink module asks TemplateFlow for its templates when it is imported (``STANDARD_SPACES =
templateflow.api.templates()``), and templateflow answers from a pybids index of every file of its home
(about 2,600 in a stub home, many more in a full one): about 6 s of CPU in every strokefc process and
every Nipype forkserver that imports the sink. What the sink needs is the names (is an output's space a
template?) and the home's folder (a template's ``template_description.json``, read for the
``Resolution`` of a ``res-`` output's sidecar). Both are plain file-system facts.

:func:`install` puts a stand-in in front of templateflow's layout before the sink is imported: it knows
the home's folder, answers ``get_templates()`` without filters from the ``tpl-<name>`` folders, and
builds the real layout (once) for anything else, so code that really queries TemplateFlow in the same
process still gets the real index. It does nothing if templateflow's layout is already built or its
cache object is not the one it knows (another templateflow version): then the sink indexes as before.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Any

#: A template's folder (templateflow's ``template`` entity: ``tpl-`` then letters, digits, ``+``).
_TEMPLATE_FOLDER = re.compile(r"tpl-([a-zA-Z0-9+]+)")


def template_names(home: Path) -> list[str]:
    """The templates of a TemplateFlow home: its ``tpl-<name>`` folders that hold a file or folder."""
    names = set()
    for entry in home.iterdir():
        match = _TEMPLATE_FOLDER.fullmatch(entry.name)
        if match and entry.is_dir() and any(entry.iterdir()):
            names.add(match.group(1))
    return sorted(names)


class _NamesFirstLayout:
    """Stands in for templateflow's pybids layout until something needs more than the names.

    ``get_templates`` is served from :meth:`__getattr__`, not defined as a method: templateflow's client
    forwards ``get_*`` only for names that ``dir()`` of the layout does not list (pybids' dynamic
    entity getters), so the stand-in must look like pybids to it.
    """

    def __init__(self, cache: Any) -> None:
        self._cache = cache
        self.root = str(cache.config.root)  # pybids' ``BIDSLayout.root`` is a string too

    def _names(self, **filters: Any) -> list[str]:
        if filters:
            return list(self._index().get_templates(**filters))
        return template_names(Path(self.root))

    def _index(self) -> Any:
        """The real layout, built once and put where templateflow keeps it (the stand-in retires)."""
        layout = type(self._cache).layout.func(self._cache)
        self._cache.__dict__["layout"] = layout
        return layout

    def __getattr__(self, name: str) -> Any:
        if name == "get_templates":
            return self._names
        if name.startswith("__") or name in ("_cache", "root"):  # copy/pickle probes, half-built objects
            raise AttributeError(name)
        return getattr(self._index(), name)


def install(cache: Any = None) -> bool:
    """Put the stand-in in front of templateflow's layout (``cache``: templateflow's own by default).

    True if it is now, or already was, in place; False if the real layout is built already or the cache
    is not a kind this module knows.
    """
    try:
        from templateflow.conf.cache import TemplateFlowCache
    except ImportError:  # no templateflow: nothing to index
        return False
    if cache is None:
        from templateflow import conf

        cache = getattr(conf, "_cache", None)
    if not isinstance(cache, TemplateFlowCache) or not isinstance(
        TemplateFlowCache.__dict__.get("layout"), cached_property
    ):
        return False
    current = cache.__dict__.get("layout")
    if current is None:
        cache.ensure()  # what building the layout does first (a missing home gets templateflow's stub)
        cache.__dict__["layout"] = _NamesFirstLayout(cache)
        return True
    return isinstance(current, _NamesFirstLayout)
