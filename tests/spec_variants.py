"""Broken variants of the real specs, generated: what every one of them must be refused as.

Each variant is ``(name, category, spec_file, bytes, expect_line)``: the bytes replace
``specs/<spec_file>``; ``expect_line`` is the line the error must point at (``None``: any line).

Structural variants come from walking a spec's data *together with* its study's Pydantic
model, so every field is mutated according to its declared type and bounds (an ``int`` field
gets a string, a boolean and a float; a bounded field a value just outside its bound; a
required field is removed; every mapping gets an unknown key), and the YAML is re-emitted with
ruamel's round-trip dumper so the marker's line is known. Text variants (syntax errors,
duplicate keys, tabs, bytes that are not UTF-8, an alias bomb, a 50 MB file, an empty file)
edit the bytes directly.
"""

from __future__ import annotations

import functools
import io
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import annotated_types as at
from pydantic import BaseModel

SPECS = ("hmm_icl.yaml", "mixture_sim.yaml", "param_alloc.yaml", "scaling.yaml")
MARK = "zz_marker"


class Variant:
    """One broken spec. A structural variant is built on first use (``build``): re-emitting the
    YAML costs ~0.2 s of CPU, the CI samples ~240 of ~2,000, so materialising all of them cost
    minutes the tests never used."""

    def __init__(self, name: str, category: str, spec: str, data: bytes | None = None,
                 expect_line: int | None = None, build: Callable[[], tuple[bytes, int | None]] | None = None):
        self.name, self.category, self.spec = name, category, spec
        self._data, self._expect_line, self._build = data, expect_line, build

    def _materialise(self) -> None:
        if self._build is not None:
            self._data, self._expect_line = self._build()
            self._build = None

    @property
    def data(self) -> bytes:
        self._materialise()
        return self._data

    @property
    def expect_line(self) -> int | None:
        self._materialise()
        return self._expect_line

    def __repr__(self) -> str:
        return f"Variant({self.name!r}, {self.category!r})"


def _rt():
    from ruamel.yaml import YAML

    y = YAML(typ="rt")
    y.width = 4096
    return y


def _load_rt(text: str):
    return _rt().load(text)


def _dump(doc) -> str:
    buf = io.StringIO()
    _rt().dump(doc, buf)
    return buf.getvalue()


def _line_of(text: str, needle: str) -> int | None:
    for i, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return i
    return None


def _models(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for a in typing.get_args(annotation) for m in _models(a)]


def _strip(annotation: Any) -> tuple[Any, list[Any]]:
    """(base type, metadata) of ``Annotated[...]`` (nested ones flattened)."""
    meta: list[Any] = []
    while typing.get_origin(annotation) is typing.Annotated:
        args = typing.get_args(annotation)
        annotation, meta = args[0], meta + list(args[1:])
    return annotation, meta


def _scalar_kind(annotation: Any) -> str | None:
    """'int', 'float', 'bool', 'str' when the field takes exactly that scalar, else None."""
    base, _ = _strip(annotation)
    return {int: "int", float: "float", bool: "bool", str: "str"}.get(base)


def _bounds(info, annotation: Any) -> list[Any]:
    _, meta = _strip(annotation)
    return [m for m in list(info.metadata) + meta if isinstance(m, (at.Gt, at.Ge, at.Lt, at.Le))]


def _outside(bound: Any, kind: str) -> Any:
    if isinstance(bound, at.Ge):
        return bound.ge - (1 if kind == "int" else 0.5)
    if isinstance(bound, at.Gt):
        return bound.gt
    if isinstance(bound, at.Le):
        return bound.le + (1 if kind == "int" else 0.5)
    return bound.lt


def _walk(node: Any, model: type[BaseModel] | None, path: tuple) -> typing.Iterator[tuple[tuple, Any, Any]]:
    """(path, field info or None, model owning the mapping) for every mapping and its fields."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(node, CommentedMap):
        yield path, None, model
        for key in list(node):
            info = model.model_fields.get(str(key)) if model is not None else None
            if info is not None:
                yield path + (key,), info, model
            sub = None
            if info is not None:
                subs = _models(info.annotation)
                sub = subs[0] if len(subs) == 1 else None
                base, _ = _strip(info.annotation)
                origin = typing.get_origin(base)
                if origin is dict and sub is not None:  # dict[str, Model]: walk each value as the model
                    for k in list(node[key]) if isinstance(node[key], CommentedMap) else []:
                        yield from _walk(node[key][k], sub, path + (key, k))
                    continue
            yield from _walk(node[key], sub, path + (key,))
    elif isinstance(node, CommentedSeq):
        for i, item in enumerate(node):
            yield from _walk(item, model, path + (i,))


def _get(doc, path):
    for p in path:
        doc = doc[p]
    return doc


def structural(spec: str, text: str, model: type[BaseModel]) -> list[Variant]:
    """Typed mutations of every field the model declares (top level and overlays)."""
    from ruamel.yaml.comments import CommentedMap

    out: list[Variant] = []
    base_doc = _load_rt(text)
    roots: list[tuple[tuple, Any]] = [((), base_doc)]
    for prof, overlay in (base_doc.get("profiles") or {}).items():
        if isinstance(overlay, CommentedMap):
            roots.append((("profiles", prof), overlay))

    def make(name: str, category: str, path: tuple, mutate) -> None:
        def build() -> tuple[bytes, int | None]:
            doc = _load_rt(text)
            mutate(doc, path)
            dumped = _dump(doc)
            return dumped.encode(), _line_of(dumped, MARK)

        out.append(Variant(f"{spec}:{name}", category, spec, build=build))

    for prefix, root in roots:
        for path, info, owner in _walk(root, model, ()):
            full = prefix + path
            dotted = ".".join(map(str, full)) or "<root>"
            if info is None:  # a mapping: an unknown key at this level
                def add_unknown(doc, p=full):
                    node = _get(doc, p)
                    node.insert(0, MARK, 1)
                make(f"unknown-key@{dotted}", "unknown key", full, add_unknown)
                continue
            kind = _scalar_kind(info.annotation)
            value = _get(base_doc, full)
            if isinstance(value, str) and "${" in value:
                continue  # a knob: its type comes from params.yaml
            if kind in ("int", "float"):
                for label, bad in (("string", f"{MARK}_not_a_number"), ("bool", True), ("inf", float("inf"))):
                    if label == "inf" and kind == "int":
                        bad = 1.5  # a fraction for an int
                    def set_bad(doc, p=full, bad=bad):
                        parent = _get(doc, p[:-1])
                        parent[p[-1]] = bad
                        parent.yaml_add_eol_comment(MARK, p[-1])
                    make(f"wrong-type-{label}@{dotted}", "wrong type", full, set_bad)
                for bound in _bounds(info, info.annotation):
                    def set_out(doc, p=full, v=_outside(bound, kind)):
                        parent = _get(doc, p[:-1])
                        parent[p[-1]] = v
                        parent.yaml_add_eol_comment(MARK, p[-1])
                    make(f"out-of-range-{type(bound).__name__}@{dotted}", "out of range", full, set_out)
            elif kind == "bool":
                def set_bool(doc, p=full):
                    parent = _get(doc, p[:-1])
                    parent[p[-1]] = f"{MARK}_maybe"
                    parent.yaml_add_eol_comment(MARK, p[-1])
                make(f"wrong-type-bool@{dotted}", "wrong type", full, set_bool)
            elif kind == "str" and isinstance(value, str):
                def set_map(doc, p=full):
                    parent = _get(doc, p[:-1])
                    bad = CommentedMap([(MARK, 1)])
                    bad.fa.set_flow_style()  # on the key's own line
                    parent[p[-1]] = bad
                make(f"wrong-type-str@{dotted}", "wrong type", full, set_map)
            if prefix == () and info.is_required() and len(full) >= 1:
                def drop(doc, p=full):
                    del _get(doc, p[:-1])[p[-1]]
                doc = _load_rt(text)
                drop(doc)
                dumped = _dump(doc)
                out.append(Variant(f"{spec}:missing@{dotted}", "missing required field", spec, dumped.encode(), None))
    return out


def knob_variants(spec: str, text: str) -> list[Variant]:
    """Every ``${knob}`` reference replaced by one params.yaml lacks."""
    out = []
    for i, match in enumerate(re.finditer(r"\$\{([A-Za-z_]\w*)\}", text)):
        if "#" in text[text.rfind("\n", 0, match.start()) + 1: match.start()]:
            continue  # in a comment
        new = text[: match.start()] + "${zz_marker_no_such_knob}" + text[match.end():]
        out.append(Variant(f"{spec}:missing-knob#{i}", "undefined knob", spec, new.encode(),
                           text.count("\n", 0, match.start()) + 1))
    return out


SIMPLE = re.compile(r"^(\s*)([A-Za-z_]\w*): ([^\s{\[&*#|>'\"][^#]*?)\s*$")


def text_variants(spec: str, text: str) -> list[Variant]:
    lines = text.splitlines(keepends=True)
    simple = [i for i, line in enumerate(lines) if SIMPLE.match(line.rstrip("\n"))]
    picks = simple[:: max(1, len(simple) // 3)][:3]
    out = []
    for i in picks:  # an unclosed flow sequence
        m = SIMPLE.match(lines[i].rstrip("\n"))
        new = lines[:i] + [f"{m.group(1)}{m.group(2)}: [{m.group(3)}\n"] + lines[i + 1:]
        out.append(Variant(f"{spec}:syntax-unclosed@{i + 1}", "YAML syntax error", spec, "".join(new).encode(), None))
    for i in picks:  # the same key twice in one mapping
        new = lines[: i + 1] + [lines[i]] + lines[i + 1:]
        out.append(Variant(f"{spec}:duplicate-key@{i + 1}", "duplicate key", spec, "".join(new).encode(), i + 2))
    indented = [i for i in simple if SIMPLE.match(lines[i].rstrip("\n")).group(1)]
    for i in indented[:2]:  # a tab in the indentation
        new = lines[:i] + ["\t" + lines[i].lstrip(" ")] + lines[i + 1:]
        out.append(Variant(f"{spec}:tab@{i + 1}", "tab indentation", spec, "".join(new).encode(), i + 1))
    raw = text.encode()
    for label, byte in (("latin1", b"\xe9"), ("ff", b"\xff")):  # not UTF-8, in a comment or a value
        i = simple[len(simple) // 2]
        offset = sum(len(line.encode()) for line in lines[:i]) + len(lines[i].rstrip("\n").encode())
        out.append(Variant(f"{spec}:not-utf8-{label}@{i + 1}", "not UTF-8", spec,
                           raw[:offset] + b" # caf" + byte + raw[offset:], i + 1))
    out.append(Variant(f"{spec}:empty", "empty file", spec, b"", 1))
    out.append(Variant(f"{spec}:only-comment", "empty file", spec, b"# nothing here\n", 1))
    out.append(Variant(f"{spec}:a-list", "wrong type", spec, b"- study\n- 1\n", 1))
    return out


def alias_bomb(levels: int = 9, width: int = 9) -> bytes:
    """The 'billion laughs' of YAML: each anchor lists the previous one ``width`` times."""
    lines = [b"lol0: &a0 [" + b", ".join([b"lol"] * width) + b"]"]
    for i in range(1, levels + 1):
        lines.append(b"lol%d: &a%d [" % (i, i) + b", ".join([b"*a%d" % (i - 1)] * width) + b"]")
    return b"\n".join(lines) + b"\n"


def size_variants(spec: str, text: str) -> list[Variant]:
    raw = text.encode()
    return [
        Variant(f"{spec}:alias-bomb-7", "alias bomb", spec, raw + alias_bomb(7), None),
        Variant(f"{spec}:alias-bomb-9", "alias bomb", spec, raw + alias_bomb(9), None),
        Variant(f"{spec}:alias-bomb-many-aliases", "alias bomb", spec,
                raw + b"z0: &z0 [1]\nz1: [" + b", ".join([b"*z0"] * 5000) + b"]\n", None),
        Variant(f"{spec}:50MB", "oversized file", spec, raw + b"# " + b"x" * (50 << 20) + b"\n", 1),
    ]


@functools.lru_cache(maxsize=4)
def all_variants(repo: Path) -> list[Variant]:
    """Every variant of the four specs (cached per repo: several tests draw from one family)."""
    import sys

    sys.path.insert(0, str(repo))
    from harness.study import discover_studies

    studies = discover_studies()
    out: list[Variant] = []
    for spec in SPECS:
        text = (repo / "specs" / spec).read_text()
        model = studies[spec.removesuffix(".yaml")].spec_model
        out += structural(spec, text, model) + knob_variants(spec, text) + text_variants(spec, text)
    out += size_variants("param_alloc.yaml", (repo / "specs" / "param_alloc.yaml").read_text())
    return out


LOCATED = re.compile(r"^(specs/[\w.]+|params\.yaml):(\d+):(\d+): (\S+): \S")


@dataclass
class Outcome:
    variant: Variant
    rc: int
    message: str
    seconds: float
    peak_mb: float
    written: list[str]

    @property
    def problems(self) -> list[str]:
        """Why this outcome is not a clean refusal (empty: it is)."""
        found = []
        lines = [line for line in self.message.splitlines() if line.strip()]
        if self.rc != 2:
            found.append(f"exit code {self.rc}, expected 2")
        if not lines:
            found.append("no message")
        for line in lines:
            m = LOCATED.match(line)
            if not m:
                found.append(f"message lacks file:line:col and field path: {line[:200]!r}")
            elif m.group(1) != f"specs/{self.variant.spec}":
                found.append(f"message names {m.group(1)}, expected specs/{self.variant.spec}: {line[:200]!r}")
        want = self.variant.expect_line
        if want is not None and lines and LOCATED.match(lines[0]):
            got = [int(LOCATED.match(line).group(2)) for line in lines if LOCATED.match(line)]
            if want not in got:
                found.append(f"points at line(s) {got}, expected {want}: {lines[0][:200]!r}")
        if self.written:
            found.append(f"wrote {self.written}")
        if self.seconds > 2.0:
            found.append(f"took {self.seconds:.2f} s of CPU (limit 2 s)")
        if self.peak_mb > 500:
            found.append(f"peak {self.peak_mb:.0f} MB (limit 500 MB)")
        return found


def project_root(repo: Path, dest: Path) -> Path:
    """A copy of what ``harness compile`` reads and writes: specs, params, pipelines, lock."""
    import shutil

    (dest / "specs").mkdir(parents=True)
    for spec in SPECS:
        shutil.copy(repo / "specs" / spec, dest / "specs" / spec)
    for rel in ["params.yaml", "dvc.yaml", "dvc.lock", *[str(p.relative_to(repo)) for p in repo.glob("profiles/*/dvc.*")]]:
        if (repo / rel).exists():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(repo / rel, dest / rel)
    return dest


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    import os

    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            st = os.stat(path)
            out[os.path.relpath(path, root)] = (st.st_size, st.st_mtime_ns)
    return out


def run_in_process(root: Path, variant: Variant, command: str = "compile", memory: bool = False) -> Outcome:
    """The CLI's own entry point (``harness.cli.main``), in this process: exit code, stderr,
    CPU time (the machine is shared: wall time measures the neighbours) and, with ``memory``,
    the peak of Python allocations (tracemalloc, which slows parsing several-fold)."""
    import contextlib
    import time
    import tracemalloc

    from harness import cli

    target = root / "specs" / variant.spec
    original = target.read_bytes()
    target.write_bytes(variant.data)
    before = snapshot(root)
    err = io.StringIO()
    if memory:
        tracemalloc.start()
    t0 = time.process_time()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                rc = cli.main(["--root", str(root), command])
            except SystemExit as exc:  # argparse and the like
                rc = int(exc.code or 0)
            except Exception as exc:  # noqa: BLE001 - a traceback is an outcome to report
                rc, _ = -1, err.write(f"TRACEBACK {type(exc).__name__}: {exc}\n")
        seconds = time.process_time() - t0
        _, peak = tracemalloc.get_traced_memory() if memory else (0, 0)
    finally:
        if memory:
            tracemalloc.stop()
    after = snapshot(root)
    written = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    written = [w for w in written if w != f"specs/{variant.spec}"]
    target.write_bytes(original)
    return Outcome(variant, rc, err.getvalue(), seconds, peak / 2**20, written)
