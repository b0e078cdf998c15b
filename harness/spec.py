"""Loading specs: safe YAML with positions, profile overlays, ``${knob}`` resolution, validation.

Why positions: a researcher who mistypes a field should be told the file, line and column of
the offending key, not a Pydantic traceback. Why knob tracking: the compiler must list under
each stage's ``params:`` exactly the knobs that stage reads, so ``dvc exp run -S glu=3.0``
reruns only those stages.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator

from harness.study import DEFAULT_PROFILE, PROFILES, PlanContext, Resources, StageDef, StrictModel, Study

KNOB_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

SpecPath = tuple[Any, ...]


class SpecError(Exception):
    """A spec or params problem the user must fix; the CLI prints it and exits with code 2."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class StudySpec(StrictModel):
    """Fields every study spec has. Studies subclass this with their own fields."""

    study: str
    description: str = ""
    #: resources per stage kind ("train", "fit", ...), profile-specific through ``profiles:``
    resources: dict[str, Resources] = Field(default_factory=dict)
    #: per-metric relative tolerances for ``harness drift``, for metrics that are legitimately
    #: sensitive (a choice among near-equal candidates): ``"<metrics file glob>:<key glob>"`` ->
    #: rtol, e.g. ``"metrics/mixture_sim/evaluate.json:*.r2_mean": 1e-3``. Only this study's
    #: metrics (``metrics/<study>/...``), only named keys (not ``*``), 0 < rtol < 1.
    drift_tolerance: dict[str, float] = Field(default_factory=dict)
    #: metrics measured to move beyond any defensible tolerance under a perturbation a second
    #: machine could cause (``harness drift --perturb``): ``"<metrics file glob>:<key glob>"`` ->
    #: the reason, with the measured sensitivity. Never compared by ``harness drift`` and never
    #: reported as a result ("not reproducible across machines"); listed on every drift run.
    not_reproducible: dict[str, str] = Field(default_factory=dict)

    @field_validator("drift_tolerance")
    @classmethod
    def _check_drift_tolerance(cls, value: dict[str, float], info) -> dict[str, float]:
        problems = metric_pattern_problems(value, (info.data or {}).get("study"), "loosen")
        problems += [f"{p!r}: rtol must be > 0 and < 1, got {rtol}" for p, rtol in value.items() if not 0 < rtol < 1]
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @field_validator("not_reproducible")
    @classmethod
    def _check_not_reproducible(cls, value: dict[str, str], info) -> dict[str, str]:
        problems = metric_pattern_problems(value, (info.data or {}).get("study"), "hide")
        problems += [f"{p!r}: give the reason and the measured sensitivity"
                     for p, reason in value.items() if not str(reason).strip()]
        if problems:
            raise ValueError("; ".join(problems))
        return value

    def resources_for(self, kind: str) -> Resources:
        return self.resources.get(kind, self.resources.get("default", Resources()))


def metric_pattern_problems(patterns: dict, study: str | None, verb: str) -> list[str]:
    """What is wrong with ``"<metrics file glob>:<key glob>"`` patterns of ``drift_tolerance`` /
    ``not_reproducible``: the syntax, another study's metrics, or a bare wildcard (which would
    ``verb`` a whole file)."""
    problems = []
    for pattern in patterns:
        file_glob, sep, key_glob = pattern.partition(":")
        if not sep or not file_glob or not key_glob:
            problems.append(f"{pattern!r}: expected '<metrics file glob>:<flattened key glob>'")
        elif study and not file_glob.startswith(f"metrics/{study}/"):
            problems.append(f"{pattern!r}: may only name this study's metrics (metrics/{study}/...)")
        elif not key_glob.strip("*?.[]"):
            problems.append(f"{pattern!r}: name the metric key; a bare wildcard would {verb} a whole file")
    return problems


@dataclass
class LoadedSpec:
    """A validated spec plus where each value came from."""

    path: Path
    study: Study
    spec: Any
    profile: str
    #: spec path -> knob names referenced at or below it
    knob_refs: dict[SpecPath, set[str]] = field(default_factory=dict)
    #: the overlays the spec declares under ``profiles:``
    declared_profiles: tuple[str, ...] = ()

    @property
    def in_profile(self) -> bool:
        """A study joins the default profile always, another profile only if it declares it."""
        return self.profile == DEFAULT_PROFILE or self.profile in self.declared_profiles

    def knobs_under(self, prefixes: list[str]) -> set[str]:
        """Knobs referenced anywhere below the given dotted spec paths."""
        wanted = [tuple(p.split(".")) if p else () for p in prefixes]
        knobs: set[str] = set()
        for path, names in self.knob_refs.items():
            str_path = tuple(str(p) for p in path)
            if any(str_path[: len(w)] == w for w in wanted):
                knobs |= names
        return knobs

    @property
    def all_knobs(self) -> set[str]:
        return set().union(*self.knob_refs.values()) if self.knob_refs else set()

    def plan(self) -> list[StageDef]:
        ctx = PlanContext(profile=self.profile, spec_path=str(self.path), study=self.study.name)
        return self.study.plan(self.spec, ctx)


def _yaml():
    from ruamel.yaml import YAML

    return YAML(typ="rt")  # round-trip loader: safe (no object construction) and keeps positions


class _TooLarge(Exception):
    def __init__(self, path: SpecPath):
        self.path = path


def _plain(node: Any, path: SpecPath, positions: dict[SpecPath, tuple[int, int]]) -> Any:
    """Convert ruamel nodes into plain Python, recording 1-based (line, col) of every key.

    Only called once ``_refuse_expansion`` has sized the document: aliases share nodes, so a
    tiny file can expand to billions of values.
    """
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(node, CommentedMap):
        out = {}
        for key in node:
            try:
                line, col = node.lc.key(key)
                positions[path + (key,)] = (line + 1, col + 1)
            except (KeyError, TypeError, AttributeError):
                pass
            out[str(key)] = _plain(node[key], path + (str(key),), positions)
        return out
    if isinstance(node, CommentedSeq):
        out_list = []
        for i, item in enumerate(node):
            try:
                line, col = node.lc.item(i)
                positions[path + (i,)] = (line + 1, col + 1)
            except (KeyError, TypeError, AttributeError):
                pass
            out_list.append(_plain(item, path + (i,), positions))
        return out_list
    if hasattr(node, "__float__") and type(node).__name__ == "ScalarFloat":
        return float(node)
    if type(node).__name__ in ("ScalarInt", "ScalarBoolean"):
        return int(node) if type(node).__name__ == "ScalarInt" else bool(node)
    if isinstance(node, str):
        return str(node)
    return node


def _expanded_count(node: Any, memo: dict[int, int], cap: int) -> int:
    """How many values ``node`` expands to, aliases included, counting each shared node once
    (memo by identity): an alias bomb is sized in microseconds, before anything is expanded."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if not isinstance(node, (CommentedMap, CommentedSeq)):
        return 1
    known = memo.get(id(node))
    if known is not None:
        return known
    memo[id(node)] = cap + 1  # a recursive alias counts as too large
    children = node.values() if isinstance(node, CommentedMap) else node
    total = 1
    for child in children:
        total += _expanded_count(child, memo, cap)
        if total > cap:
            break
    memo[id(node)] = min(total, cap + 1)
    return memo[id(node)]


def _refuse_expansion(raw: Any, cap: int) -> None:
    """Raise ``_TooLarge`` at the path where the expansion of ``raw`` passes ``cap`` values: the
    path the value-by-value conversion would stop at, found by descending into the child whose
    running total crosses the budget."""
    from ruamel.yaml.comments import CommentedMap

    memo: dict[int, int] = {}
    if _expanded_count(raw, memo, cap) <= cap:
        return
    node, path, left = raw, (), cap - 1
    while True:
        items = list(node.items()) if isinstance(node, CommentedMap) else list(enumerate(node))
        for key, child in items:
            size = _expanded_count(child, memo, cap)
            if size > left:
                node, path, left = child, path + (str(key) if isinstance(node, CommentedMap) else key,), left - 1
                break
            left -= size
        else:
            raise _TooLarge(path)
        if _expanded_count(node, memo, cap) == 1:
            raise _TooLarge(path)


def _position_in(raw: Any, path: SpecPath) -> tuple[int, int]:
    """1-based (line, col) of the deepest key along ``path`` in the composed document."""
    found, node = (1, 1), raw
    for key in path:
        try:
            line, col = node.lc.key(key) if isinstance(key, str) else node.lc.item(key)
            found, node = (line + 1, col + 1), node[key]
        except (KeyError, TypeError, AttributeError, IndexError):
            break
    return found


#: a spec or params.yaml larger than this is refused before YAML parses it (real specs are a
#: few KB; a 50 MB file is a mistake, and parsing it costs minutes and gigabytes)
MAX_SPEC_BYTES = 1 << 20
#: at most this many values (mappings, sequences, scalars) after aliases are expanded: a few
#: hundred bytes of nested anchors (an "alias bomb") would otherwise expand to billions
MAX_SPEC_NODES = 20_000
#: parsed documents by (shown path, sha256 of the text): (plain data, positions)
_PARSED: dict[tuple[str, str], tuple[Any, dict]] = {}
#: at most this many aliases (``*name``) in one file, counted before anything is composed
MAX_SPEC_ALIASES = 1_000


def _where_byte(path: Path, data: bytes, offset: int) -> str:
    line = data.count(b"\n", 0, offset) + 1
    col = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
    return f"{path}:{line}:{col}"


def read_spec_text(path: Path, display: Path | None = None) -> str:
    """The text of a spec or params file, refused with a located message when it is too large,
    not UTF-8, or holds more aliases than any real spec would: checked on the bytes, before
    YAML sees them, so a bad file costs milliseconds, not minutes."""
    shown = display or path
    try:
        size = path.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise SpecError([f"{shown}:1:1: <document>: {size:,} bytes; a spec or params file is at most "
                             f"{MAX_SPEC_BYTES:,} bytes (is this the right file?)"])
        data = path.read_bytes()
    except OSError as exc:
        raise SpecError([f"{shown}:1:1: <document>: cannot read: {exc.strerror}"]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError([f"{_where_byte(shown, data, exc.start)}: <document>: byte 0x{data[exc.start]:02x} is "
                         "not UTF-8; specs and params.yaml are UTF-8 text (re-save the file as UTF-8)"]) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    aliases = list(re.finditer(r"(?:^|[\s\[{,:-])\*[^\s,\[\]{}]+", text))
    if len(aliases) > MAX_SPEC_ALIASES:
        offset = len(text[: aliases[MAX_SPEC_ALIASES].start()].encode())
        raise SpecError([f"{_where_byte(shown, data, offset)}: <document>: more than {MAX_SPEC_ALIASES} "
                         "aliases (*name); refused before expanding them"])
    return text


def read_yaml_with_positions(path: Path, display: Path | None = None) -> tuple[Any, dict[SpecPath, tuple[int, int]]]:
    shown = display or path
    text = read_spec_text(path, display)
    key = (str(shown), hashlib.sha256(text.encode()).hexdigest())
    if key in _PARSED:  # one compile reads each spec once per profile: parse it once
        plain, positions = _PARSED[key]
        return copy.deepcopy(plain), dict(positions)
    from ruamel.yaml import __version__ as ruamel_version

    from harness.contentmemo import memoised, source_salt

    # parsed once per content on disk too: only documents that parse and pass the size checks
    # are stored (an error is raised inside the computation, never memoised)
    plain, positions = memoised("spec-yaml", source_salt(__file__) + ruamel_version.encode(), text.encode(),
                                lambda: _parse_checked(text, shown))
    if len(_PARSED) > 64:
        _PARSED.clear()
    _PARSED[key] = (copy.deepcopy(plain), dict(positions))
    return plain, positions


def _parse_checked(text: str, shown: Path) -> tuple[Any, dict[SpecPath, tuple[int, int]]]:
    """YAML text -> (plain data, positions), refusing syntax errors and alias bombs with a location."""
    from ruamel.yaml.error import YAMLError

    positions: dict[SpecPath, tuple[int, int]] = {}
    try:
        raw = _yaml().load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{shown}:{mark.line + 1}:{mark.column + 1}" if mark else f"{shown}:1:1"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError([f"{where}: <document>: not valid YAML: {problem}"]) from None
    except RecursionError:
        raise SpecError([f"{shown}:1:1: <document>: nested too deeply to be a spec"]) from None
    try:
        _refuse_expansion(raw, MAX_SPEC_NODES)
        plain = _plain(raw, (), positions)
    except _TooLarge as exc:
        line, col = _position_in(raw, exc.path)
        raise SpecError([f"{shown}:{line}:{col}: <document>: expands to more than {MAX_SPEC_NODES:,} values "
                         f"(nested aliases?); refused near {'.'.join(map(str, exc.path)) or '<root>'}"]) from None
    except RecursionError:
        raise SpecError([f"{shown}:1:1: <document>: nested too deeply (a recursive alias?)"]) from None
    return plain, positions


def load_params(path: Path, display: Path | None = None) -> dict[str, Any]:
    """params.yaml: a flat mapping of knob -> scalar."""
    shown = display or path
    if not path.exists():
        raise SpecError([f"{shown}:1:1: <document>: missing; it holds the knobs (glu, seed, ...)"])
    data, positions = read_yaml_with_positions(path, display)
    path = shown
    if data is None:
        data = {}  # an empty params.yaml: no knobs (the specs' ${...} references then say what is missing)
    if not isinstance(data, dict):
        raise SpecError([f"{path}:1:1: <document>: expected a mapping of knob: value, got {type(data).__name__}"])
    problems = []
    for key, value in data.items():
        line, col = positions.get((key,), (1, 1))
        if isinstance(value, (dict, list)):
            problems.append(f"{path}:{line}:{col}: {key}: knob `{key}` must be a scalar, got {type(value).__name__}")
        elif isinstance(value, float) and not math.isfinite(value):
            problems.append(f"{path}:{line}:{col}: {key}: knob `{key}` is {value}; knobs must be finite numbers")
    if problems:
        raise SpecError(problems)
    return data


def _deep_merge(base: Any, over: Any, base_pos: dict, over_pos: dict, path: SpecPath) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for key, value in over.items():
            sub = path + (key,)
            if key in base:
                out[key] = _deep_merge(base[key], value, base_pos, over_pos, sub)
            else:
                out[key] = value
                _copy_positions(over_pos, base_pos, sub)
            if sub in over_pos:
                base_pos[sub] = over_pos[sub]
        return out
    _drop_positions(base_pos, path)
    _copy_positions(over_pos, base_pos, path)
    return copy.deepcopy(over)


def _copy_positions(src: dict, dst: dict, prefix: SpecPath) -> None:
    for key, value in src.items():
        if key[: len(prefix)] == prefix:
            dst[key] = value


def _drop_positions(pos: dict, prefix: SpecPath) -> None:
    for key in [k for k in pos if k[: len(prefix)] == prefix and len(k) > len(prefix)]:
        del pos[key]


def _resolve_knobs(
    node: Any, path: SpecPath, params: dict, refs: dict, problems: list, where
) -> Any:
    if isinstance(node, dict):
        return {k: _resolve_knobs(v, path + (k,), params, refs, problems, where) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve_knobs(v, path + (i,), params, refs, problems, where) for i, v in enumerate(node)]
    if isinstance(node, str) and "${" in node:
        names = KNOB_RE.findall(node)
        if not names:
            problems.append(f"{where(path)}: {_dotted(path)}: malformed knob reference {node!r}; expected ${{name}}")
            return node
        refs.setdefault(path, set()).update(names)
        missing = [n for n in names if n not in params]
        for name in missing:
            hint = _did_you_mean(name, params)
            problems.append(f"{where(path)}: {_dotted(path)}: knob `{name}` is not defined in params.yaml{hint}")
        if missing:
            return node
        full = KNOB_RE.fullmatch(node)
        if full:  # `${glu}` keeps the knob's type
            return params[full.group(1)]
        return KNOB_RE.sub(lambda m: str(params[m.group(1)]), node)
    return node


def _dotted(path: SpecPath) -> str:
    return ".".join(str(p) for p in path) or "<root>"


def _did_you_mean(name: str, known) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.5)
    return f"; did you mean `{close[0]}`?" if close else ""


def _locate(positions: dict, data: Any, loc: tuple) -> tuple[SpecPath, tuple[int, int] | None]:
    """Map a Pydantic error location onto the deepest spec key that exists in the data."""
    path: SpecPath = ()
    node = data
    best = positions.get((), None)
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
            path = path + (part,)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
            path = path + (part,)
        else:
            continue  # discriminator tags and the like are not keys in the file
        best = positions.get(path, best)
    return path, best


def format_validation_error(spec_path: Path, exc: ValidationError, data: Any, positions: dict,
                            model: Any = None) -> list[str]:
    problems = []
    from harness.schema import BOOL_FOR_NUMBER

    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        if err["type"] == BOOL_FOR_NUMBER:  # raised by the model: point at the field itself
            loc = loc + (err["ctx"]["field"],)
        found, pos = _locate(positions, data, loc)
        if not found and loc:  # raised by a validator building a nested model: its loc is relative
            found, pos = _search(positions, data, loc, err.get("input"))
            if found:
                loc = found
        # a model-level validator naming the field: `coord.x.widths: ...` or `search.at must ...`
        named = re.match(r"(?:Value error, )?([A-Za-z_]\w*(?:\.\w+)*):|(?:Value error, )?([A-Za-z_]\w*(?:\.\w+)+) ",
                         err["msg"])
        if named:
            parts = tuple(int(p) if p.isdigit() else p for p in (named.group(1) or named.group(2)).split("."))
            sub, sub_pos = _locate(positions, data, loc + parts)
            if sub_pos is not None and len(sub) > len(found):
                found, pos = sub, sub_pos
                # and the offending key itself when the message quotes one that is there
                for quoted in re.findall(r"'([^']+)'", err["msg"]):
                    key, key_pos = _locate(positions, data, sub + (quoted,))
                    if key_pos is not None and len(key) > len(sub):
                        found, pos = key, key_pos
                        break
        line, col = pos or (1, 1)
        dotted = _dotted(loc)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            parent_loc = loc[:-1]
            msg = f"unknown field `{loc[-1]}`"
            model_fields = _fields_at(model, parent_loc) if model is not None else []
            if model_fields:
                msg += _did_you_mean(str(loc[-1]), model_fields) or f"; expected one of {sorted(model_fields)}"
        elif "input" in err and not isinstance(err["input"], (dict, list)):
            msg += f" (got {err['input']!r})"
        problems.append(f"{spec_path}:{line}:{col}: {dotted}: {msg}")
    return problems


def _search(positions: dict, data: Any, loc: tuple, value: Any) -> tuple[SpecPath, tuple[int, int] | None]:
    """The first spec key whose path ends like ``loc`` (and, when known, holds ``value``).

    A validator that builds a nested model (a grid point from a list of sizes) raises errors
    located relative to that model (``hidden``); this finds the key the value came from
    (``grid.hidden.0``) instead of pointing at 1:1.
    """
    names = tuple(str(p) for p in loc if not isinstance(p, int))
    fallback: tuple[SpecPath, tuple[int, int] | None] = ((), None)
    for path in positions:
        if tuple(str(p) for p in path if not isinstance(p, int))[-len(names):] != names:
            continue
        node, ok = data, True
        for part in path:
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
            else:
                ok = False
                break
        if not ok:
            continue
        if isinstance(value, (dict, list)) or value is None:
            return path, positions[path]
        if node == value and type(node) is type(value):
            return path, positions[path]
        if isinstance(node, list) and value in node:
            item = path + (node.index(value),)
            return item, positions.get(item, positions[path])
        fallback = fallback if fallback[0] else (path, positions[path])
    return fallback


def _fields_at(model: Any, loc: tuple) -> list[str]:
    """Field names of the (nested) model at ``loc``, walking annotations; [] when unknown."""
    import typing

    from pydantic import BaseModel

    def models_in(annotation: Any) -> list[type[BaseModel]]:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return [annotation]
        return [m for arg in typing.get_args(annotation) for m in models_in(arg)]

    current: list[Any] = [model]
    for part in loc:
        if isinstance(part, int):
            continue
        nxt = []
        for candidate in current:
            for m in models_in(candidate):
                if part in m.model_fields:
                    nxt.append(m.model_fields[part].annotation)
            if not isinstance(candidate, type):
                nxt.extend(a for a in typing.get_args(candidate) if not isinstance(a, type) or models_in(a))
        current = nxt or current
    return sorted({f for c in current for m in models_in(c) for f in m.model_fields})


def load_spec(path: Path, params: dict, studies: dict[str, Study], display: Path | None = None,
              profile: str | None = None) -> LoadedSpec:
    """Load, overlay ``profile`` (default: the default profile), resolve knobs, validate one spec."""
    data, positions = read_yaml_with_positions(path, display)
    path = display or path
    if not isinstance(data, dict):
        got = "an empty file" if data is None else f"a {type(data).__name__}"
        raise SpecError([f"{path}:1:1: <document>: a spec must be a mapping with a `study:` key, got {got}"])

    def where(p: SpecPath) -> str:
        line, col = positions.get(p, (1, 1))
        return f"{path}:{line}:{col}"

    name = data.get("study")
    if not isinstance(name, str) or name not in studies:
        hint = _did_you_mean(str(name), studies)
        raise SpecError([f"{where(('study',))}: study: unknown study {name!r}{hint}; known: {sorted(studies)}"])
    profile = profile or params.get("profile", DEFAULT_PROFILE)  # tests may pass it in params
    if profile not in PROFILES:
        raise SpecError([f"{path}:1:1: profile: expected one of {list(PROFILES)}, got {profile!r}"])

    profiles = data.pop("profiles", {}) or {}
    if not isinstance(profiles, dict) or not set(profiles) <= set(PROFILES):
        bad = sorted(set(profiles) - set(PROFILES)) if isinstance(profiles, dict) else profiles
        at = ("profiles", bad[0]) if isinstance(profiles, dict) and bad else ("profiles",)
        raise SpecError([f"{where(at)}: {_dotted(at)}: unknown profile(s) {bad}; expected {list(PROFILES)}"])
    overlay = profiles.get(profile) or {}
    overlay_pos = {k[2:]: v for k, v in positions.items() if k[:2] == ("profiles", profile)}
    merged = _deep_merge(data, overlay, positions, overlay_pos, ())

    problems: list[str] = []
    refs: dict[SpecPath, set[str]] = {}
    resolved = _resolve_knobs(merged, (), params, refs, problems, where)
    if problems:
        raise SpecError(sorted(set(problems)))
    try:
        spec = studies[name].spec_model.model_validate(resolved)
    except ValidationError as exc:
        raise SpecError(format_validation_error(path, exc, resolved, positions, studies[name].spec_model)) from None
    return LoadedSpec(path=path, study=studies[name], spec=spec, profile=profile, knob_refs=refs,
                      declared_profiles=tuple(sorted(profiles)))


def load_all(root: Path, studies: dict[str, Study] | None = None,
             only_study_prefix_of: str | None = None,
             profile: str = DEFAULT_PROFILE) -> tuple[dict[str, Any], list[LoadedSpec]]:
    """Load params.yaml and every ``specs/*.yaml`` under ``root`` for one profile; all problems at once.

    ``only_study_prefix_of``: load just the specs whose study owns that stage name
    (``<study>-...``), so running one stage never depends on another study's spec. Specs that do
    not declare ``profile`` (other than the default) are validated but not returned.
    """
    from harness.study import discover_studies

    studies = studies or discover_studies()
    params = load_params(root / "params.yaml", Path("params.yaml"))
    loaded, problems = [], []
    for spec_file in sorted((root / "specs").glob("*.yaml")):
        if only_study_prefix_of is not None:
            # bytes, not text: another study's undecodable spec must not stop this stage
            match = re.search(rb"^study:\s*([A-Za-z0-9_]+)", spec_file.read_bytes(), re.MULTILINE)
            if not match or not only_study_prefix_of.startswith(match.group(1).decode() + "-"):
                continue
        if profile != DEFAULT_PROFILE and profile not in _declared_profiles(spec_file):
            continue
        try:
            item = load_spec(spec_file, params, studies, display=spec_file.relative_to(root), profile=profile)
        except SpecError as exc:
            problems.extend(exc.problems)
            continue
        if item.in_profile:
            loaded.append(item)
    if problems:
        raise SpecError(problems)
    return params, loaded


def _declared_profiles(spec_file: Path) -> list[str]:
    """Profile names under a spec's ``profiles:`` ([] when unreadable: the default load reports it)."""
    try:
        data, _ = read_yaml_with_positions(spec_file)
    except SpecError:
        return []
    profiles = data.get("profiles") if isinstance(data, dict) else None
    return list(profiles) if isinstance(profiles, dict) else []


def check_knobs(params: dict, loaded: list[LoadedSpec], params_path: Path | None = None) -> None:
    """Every knob in params.yaml must be read by some spec: a misspelt `-S` key is an error.

    ``loaded`` should hold the specs of every profile, so a knob only the ``full`` profile reads
    is still known.
    """
    shown = "params.yaml"
    positions: dict[SpecPath, tuple[int, int]] = {}
    if params_path is not None and params_path.exists():
        shown = params_path.name
        try:
            _, positions = read_yaml_with_positions(params_path)
        except SpecError:
            pass

    def at(key: str) -> str:
        line, col = positions.get((key,), (1, 1))
        return f"{shown}:{line}:{col}: {key}"

    problems = []
    if "profile" in params:
        problems.append(f"{at('profile')}: `profile` is no longer a knob: every profile is its own pipeline "
                        "(`dvc repro` runs smoke; `dvc repro profiles/reference/dvc.yaml` runs reference)")
    known: set[str] = set()
    for item in loaded:
        known |= item.all_knobs
    unknown = sorted(set(params) - known - {"profile"})
    problems += [f"{at(k)}: unknown knob `{k}` (no spec reads it){_did_you_mean(k, known)}" for k in unknown]
    if problems:
        raise SpecError(problems)


def load_profiles(root: Path) -> tuple[dict[str, Any], dict[str, list[LoadedSpec]]]:
    """params.yaml and the specs of every profile (validated, every problem reported at once)."""
    from harness.study import discover_studies

    studies = discover_studies()
    by_profile: dict[str, list[LoadedSpec]] = {}
    problems: list[str] = []
    params: dict[str, Any] = {}
    for profile in PROFILES:
        try:
            params, by_profile[profile] = load_all(root, studies, profile=profile)
        except SpecError as exc:
            problems += [p for p in exc.problems if p not in problems]
    if problems:
        raise SpecError(problems)
    return params, by_profile
