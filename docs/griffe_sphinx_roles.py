"""Turns the reST roles of jax_gen's docstrings into links of the API reference.

The docstrings are Google style, but name other objects the Sphinx way: :func:`sample`,
:class:`~jax_gen.sampling.guidance.Guided`, :mod:`jax_gen.cli.commands`. mkdocstrings reads
Markdown, where such a role would show as ``:func:`` followed by code. This griffe extension
(mkdocs.yml: the python handler's ``extensions``) rewrites each role once the package is loaded:

- a target resolved, as Python would resolve the name from where the docstring stands (the
  object, then its class, its module, its package), to an object of jax_gen that the reference
  renders becomes a cross-reference, ``[`sample`][jax_gen.sampling.loop.sample]``, to the
  object's canonical path (the page that defines it);
- a target outside jax_gen (``jax.lax.scan``) or a private one stays code, ```jax.lax.scan```;
- a target that names nothing is a bad reference in the docstring: it stays code, and a
  warning names it, which fails the strict build.

A leading ``~`` shows only the last part of the name, as in Sphinx.

It also checks the Args sections, which name parameters alone or in groups (``a, b: ...``):
griffe's own check (``warn_unknown_params``, off in mkdocs.yml) takes a group for one unknown
parameter, so this one splits groups and warns, with the same message, about any name that is
not a parameter of the function.
"""

import logging
import re

import griffe

ROLE = re.compile(r":(?:py:)?(?:mod|func|class|meth|attr|data|obj|exc|const):`(~?)([^`<>]+)`")
PACKAGE = "jax_gen"
# mkdocs counts every warning logged under "mkdocs"; strict builds fail on them.
log = logging.getLogger("mkdocs.plugins.griffe_sphinx_roles")


def _final(obj: griffe.Object | griffe.Alias) -> griffe.Object | None:
    """The object an alias finally points to, or None where it leaves the loaded package."""
    if not obj.is_alias:
        return obj
    try:
        return obj.final_target
    except (griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None


def _outside(target: str, obj: griffe.Object) -> bool:
    """Whether ``target`` names something outside jax_gen (an import of another package)."""
    head = target.split(".")[0]
    scope: griffe.Object | None = obj
    while scope is not None:
        member = scope.members.get(head)
        if member is not None:
            if member.is_alias:
                return not member.target_path.startswith(f"{PACKAGE}.")
            return False
        scope = scope.parent
    # Not in scope: a dotted name is another package's (numpy.random.Generator, say); a bare
    # one should have been found.
    return "." in target and head != PACKAGE


def _resolve(target: str, obj: griffe.Object, package: griffe.Module) -> griffe.Object | None:
    """The object ``target`` names, looked up from where ``obj``'s docstring stands."""
    head, *rest = target.split(".")
    node: griffe.Object | griffe.Alias | None = None
    if head == PACKAGE:
        node = package
    else:
        scope: griffe.Object | None = obj
        while scope is not None and node is None:
            node = scope.members.get(head)
            scope = scope.parent
    for part in rest:
        node = _final(node) if node is not None else None
        if node is None:
            return None
        node = node.members.get(part)
    return _final(node) if node is not None else None


def _rendered(obj: griffe.Object) -> bool:
    """Whether the API reference renders ``obj`` (mkdocs.yml's filters: no private names)."""
    parts = obj.path.split(".")
    return parts[0] == PACKAGE and not any(
        part.startswith("_") and part != "__call__" for part in parts[1:]
    )


class SphinxRoles(griffe.Extension):
    """Rewrites :role:`target` in every docstring of jax_gen (see the module docstring)."""

    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        if pkg.name != PACKAGE:
            return
        for obj in _walk(pkg):
            if obj.docstring is not None:
                obj.docstring.value = ROLE.sub(
                    lambda match, obj=obj: self._link(match, obj, pkg), obj.docstring.value
                )
                if obj.is_function:
                    _check_parameters(obj)

    def _link(self, match: re.Match, obj: griffe.Object, package: griffe.Module) -> str:
        short, target = match.group(1) == "~", match.group(2).strip()
        shown = f"`{target.rsplit('.', 1)[-1] if short else target}`"
        found = _resolve(target, obj, package)
        if found is not None and _rendered(found):
            return f"[{shown}][{found.path}]"
        if found is None and not _outside(target, obj):
            where = obj.docstring.lineno if obj.docstring else None
            log.warning(
                f"{obj.relative_filepath}:{where}: {match.group(0)} in the docstring of "
                f"{obj.path} names nothing"
            )
        return shown


def _walk(obj: griffe.Object):
    """``obj`` and every object defined in it, depth first (aliases are someone else's)."""
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member)


def _check_parameters(func: griffe.Function) -> None:
    """Warns about each name of the Args section that is not a parameter of ``func``."""
    known = {parameter.name for parameter in func.parameters}
    sections = griffe.parse_google(func.docstring, warn_unknown_params=False, warnings=False)
    for section in sections:
        if section.kind is not griffe.DocstringSectionKind.parameters:
            continue
        for documented in section.value:
            for name in documented.name.split(","):
                if name.strip().lstrip("*") not in known:
                    log.warning(
                        f"griffe: {func.relative_filepath}:{func.docstring.lineno}: Parameter "
                        f"{name.strip()!r} does not appear in the function signature"
                    )
