"""A stage's code dependencies, derived from its imports rather than listed by hand.

Why derived: hand-kept lists drift (an eval stage that calls ``harness.trainer.evaluate`` but
does not list ``harness/trainer.py`` keeps serving old metrics after that function changes).
The closure is computed from the source with :mod:`ast`, so nothing is imported or executed:
every ``import x`` / ``from x import y`` anywhere in a module (lazy imports inside functions
included, since they run when the stage runs), resolved to files of the project, followed
transitively. Package ``__init__.py`` files count, because importing ``a.b`` runs ``a/__init__``.
Modules outside the project (the standard library, torch, an installed harness seen from a
throwaway test project) are not DVC deps and are left out.
"""

from __future__ import annotations

import ast
import functools
import os
from pathlib import Path


@functools.lru_cache(maxsize=None)
def _imports_of(path: Path, mtime_ns: int) -> tuple[tuple[str, tuple[str, ...], int], ...]:
    """``(module, names, level)`` of every import statement in ``path`` (cached per mtime in the
    process, and by content on disk: a compile after an edit rescans only the edited files)."""
    from harness.contentmemo import memoised, source_salt

    source = path.read_bytes()
    return memoised("imports", source_salt(__file__), source, lambda: _scan_imports(source, path))


def _scan_imports(source: bytes, path: Path) -> tuple[tuple[str, tuple[str, ...], int], ...]:
    tree = ast.parse(source, filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, (), 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", tuple(a.name for a in node.names), node.level))
    return tuple(found)


class ModuleFinder:
    """Resolves dotted module names to files below a set of search folders, without importing."""

    def __init__(self, root: Path, search: list[Path] | None = None):
        self.root = root.resolve()
        self.search = [p.resolve() for p in (search or [])] + [self.root]
        self._files: dict[str, Path | None] = {}
        self._closures: dict[tuple[str, ...], list[Path]] = {}

    def file_of(self, module: str) -> Path | None:
        if module not in self._files:  # one compile asks for the same modules hundreds of times
            self._files[module] = self._find(module)
        return self._files[module]

    def _find(self, module: str) -> Path | None:
        parts = module.split(".")
        for base in self.search:
            stem = base.joinpath(*parts)
            for candidate in (stem.with_suffix(".py"), stem / "__init__.py"):
                if candidate.is_file():
                    return candidate
        return None

    def package_inits(self, module: str) -> list[Path]:
        """``__init__.py`` of every package above ``module`` (they run when it is imported)."""
        parts = module.split(".")
        found = []
        for i in range(1, len(parts)):
            init = self.file_of(".".join(parts[:i]))
            if init is not None and init.name == "__init__.py":
                found.append(init)
        return found

    def module_name(self, path: Path) -> str:
        for base in self.search:
            try:
                rel = path.resolve().relative_to(base)
            except ValueError:
                continue
            parts = list(rel.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            return ".".join(parts)
        raise ValueError(f"{path} is not below any of {self.search}")

    def closure(self, modules: list[str]) -> list[Path]:
        """Files of ``modules`` and of everything they import, transitively (sorted)."""
        key = tuple(sorted(modules))
        if key not in self._closures:
            self._closures[key] = self._closure(list(key))
        return list(self._closures[key])

    def _closure(self, modules: list[str]) -> list[Path]:
        seen: set[Path] = set()
        todo: list[str] = list(modules)
        while todo:
            name = todo.pop()
            path = self.file_of(name)
            if path is None or path in seen:
                continue
            seen.add(path)
            seen.update(self.package_inits(name))
            todo += self._direct(path)
        return sorted(seen)

    def _direct(self, path: Path) -> list[str]:
        own = self.module_name(path)
        package = own if path.name == "__init__.py" else own.rpartition(".")[0]
        names = []
        for module, imported, level in _imports_of(path, path.stat().st_mtime_ns):
            if level:
                base = package.split(".") if package else []
                base = base[: len(base) - (level - 1)] if level > 1 else base
                module = ".".join([*base, module] if module else base)
            if not module:
                continue
            names.append(module)
            # `from pkg import sub` may name a submodule rather than an attribute
            names += [f"{module}.{n}" for n in imported if n != "*"]
        return names


_FINDERS: dict[tuple[Path, tuple[Path, ...]], ModuleFinder] = {}


def clear_caches() -> None:
    """Forget resolved modules and closures (a compile starts with this: files may have moved)."""
    _FINDERS.clear()


def code_deps(root: Path, modules: list[str], search: list[Path] | None = None) -> list[str]:
    """Project-relative paths (posix) of the code a run of ``modules`` can execute."""
    key = (Path(root).resolve(), tuple(Path(p).resolve() for p in (search or [])))
    finder = _FINDERS.get(key)
    if finder is None:
        finder = _FINDERS[key] = ModuleFinder(root, search)
    out = []
    for path in finder.closure(modules):
        try:
            out.append(path.relative_to(finder.root).as_posix())
        except ValueError:
            continue  # outside the project: not something DVC can hash
    return out


def study_search_path() -> list[Path]:
    """Extra folders holding study packages (``$HARNESS_STUDY_PATH``), searched before the root."""
    from harness.study import STUDY_PATH_ENV

    return [Path(p) for p in os.environ.get(STUDY_PATH_ENV, "").split(os.pathsep) if p]
