"""Embedded default data of the param_alloc study: a WikiText-style corpus and GLUE-style tasks.

Why generated: the smoke profile must run on a fresh clone with no network, and ``data.dvc``
must hash identically everywhere. The text is produced from templates by ``random.Random`` with
a fixed seed (stable across Python versions and machines). It has the WikiText layout
(`` = Title = `` headings, blank lines), so the same reader handles it and real WikiText-2.
The tasks use the GLUE TSV layouts (SST-2, RTE, MRPC; BoolQ as question/passage/label), so the
same task reader scores real GLUE files given by path.
"""

from __future__ import annotations

import random
from pathlib import Path

#: folder under data/ that generate() fills (tracked by data.dvc)
DATASET = "param_alloc"

SEED = 20240601
N_ARTICLES = 360

PLACES = ["Arden", "Belmont", "Calder", "Dunmore", "Elston", "Fairholm", "Glenrock", "Harwick", "Ivesby",
          "Jarrow", "Kelmscott", "Linford", "Marlow", "Northam", "Oakridge", "Penrith", "Quarry", "Redcliff",
          "Stanmore", "Thornbury", "Upton", "Ventnor", "Westbury", "Yarmouth"]
RIVERS = ["Avon", "Brent", "Colne", "Derwent", "Eden", "Frome", "Kennet", "Lune", "Mersey", "Nene", "Ouse", "Tees"]
PEOPLE = ["Ada Hale", "Ben Ross", "Cara Doyle", "Dan Price", "Eve Marsh", "Finn Lowe", "Gail Stone",
          "Hugo Park", "Iris Webb", "Jack Reed", "Kate Moss", "Liam Ford", "Mona Hart", "Ned Cole"]
THINGS = ["bridge", "church", "mill", "station", "library", "museum", "market", "castle", "school", "harbour"]
ADJ_POS = ["wonderful", "moving", "brilliant", "charming", "delightful", "superb", "touching", "gripping"]
ADJ_NEG = ["dull", "tedious", "clumsy", "awful", "boring", "messy", "bland", "lifeless"]
NOUNS = ["film", "story", "performance", "plot", "script", "soundtrack", "ending", "cast"]


def _sentence(rng: random.Random, place: str) -> str:
    kind = rng.randrange(6)
    year = rng.randrange(1750, 2000)
    if kind == 0:
        return f"The {rng.choice(THINGS)} of {place} was built in {year} by {rng.choice(PEOPLE)} ."
    if kind == 1:
        return f"{place} lies on the River {rng.choice(RIVERS)} , {rng.randrange(2, 90)} miles from {rng.choice(PLACES)} ."
    if kind == 2:
        return f"In {year} the population of {place} was {rng.randrange(1, 99)} @,@ {rng.randrange(100, 999)} ."
    if kind == 3:
        return f"{rng.choice(PEOPLE)} was born in {place} and later moved to {rng.choice(PLACES)} ."
    if kind == 4:
        return f"The old {rng.choice(THINGS)} was restored in {year} and is now a {rng.choice(THINGS)} ."
    return f"{place} is known for its {rng.choice(THINGS)} and its {rng.choice(THINGS)} ."


def corpus_text(seed: int = SEED, n_articles: int = N_ARTICLES) -> str:
    rng = random.Random(seed)
    lines: list[str] = []
    for i in range(n_articles):
        place = f"{rng.choice(PLACES)} {rng.choice(['Green', 'Hill', 'Cross', 'Bay', 'Vale', 'Park'])}"
        lines += ["", f" = {place} ({i}) = ", ""]
        for section in ("History", "Geography", "Landmarks")[: rng.randrange(1, 4)]:
            lines += [f" = = {section} = = ", ""]
            for _ in range(rng.randrange(2, 5)):
                lines.append(" " + " ".join(_sentence(rng, place) for _ in range(rng.randrange(3, 7))) + " ")
            lines.append("")
    return "\n".join(lines) + "\n"


def _review(rng: random.Random, positive: bool) -> str:
    adj = rng.choice(ADJ_POS if positive else ADJ_NEG)
    return f"the {rng.choice(NOUNS)} was {adj} and the {rng.choice(NOUNS)} felt {rng.choice(ADJ_POS if positive else ADJ_NEG)}"


def tasks(seed: int = SEED) -> dict[str, str]:
    """GLUE-layout TSV text per task; labels balanced and derived from the generated facts."""
    rng = random.Random(seed + 1)
    out: dict[str, list[str]] = {
        "sst2": ["sentence\tlabel"],
        "rte": ["index\tsentence1\tsentence2\tlabel"],
        "boolq": ["question\tpassage\tlabel"],
        "mrpc": ["Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"],
    }
    for i in range(120):
        positive = i % 2 == 0
        out["sst2"].append(f"{_review(rng, positive)} .\t{int(positive)}")
    for i in range(80):
        place, person = rng.choice(PLACES), rng.choice(PEOPLE)
        other = rng.choice([p for p in PLACES if p != place])
        entail = i % 2 == 0
        out["rte"].append(f"{i}\t{person} was born in {place} .\t{person} was born in {place if entail else other} ."
                          f"\t{'entailment' if entail else 'not_entailment'}")
        river = rng.choice(RIVERS)
        asked = river if i % 2 == 0 else rng.choice([r for r in RIVERS if r != river])
        out["boolq"].append(f"does {place} lie on the river {asked.lower()}\t{place} lies on the River {river} ."
                            f"\t{'True' if asked == river else 'False'}")
        thing, year = rng.choice(THINGS), rng.randrange(1750, 2000)
        same = i % 2 == 0
        s2 = f"In {year} , {person} built the {thing} of {place} ." if same else f"The {thing} of {other} was sold in {year} ."
        out["mrpc"].append(f"{int(same)}\t{2 * i}\t{2 * i + 1}\tThe {thing} of {place} was built in {year} by {person} .\t{s2}")
    return {name: "\n".join(rows) + "\n" for name, rows in out.items()}


def generate(out_dir: Path) -> None:
    (out_dir / "corpus.txt").write_text(corpus_text())
    task_dir = out_dir / "tasks"
    task_dir.mkdir(parents=True, exist_ok=True)
    for name, text in tasks().items():
        (task_dir / f"{name}.tsv").write_text(text)
