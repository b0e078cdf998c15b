"""Seven small, clearly distinct text domains (+ three multiple-choice tasks) for the mixture_sim smoke run.

Why generated: the mixture simulator needs LMs trained on *mixtures of domains* whose eval losses
move when the mixture moves. Real RedPajama slices are gigabytes and cannot ship with the repo,
so ``smoke`` uses stand-ins with the same roles, each produced by a tiny template grammar with
its own alphabet and rhythm (encyclopedic prose, Q&A, Python code, LaTeX maths, narrative), so a
byte-level LM trained mostly on one of them is measurably worse on the others.

Layout written under ``out_dir`` (what ``harness bootstrap`` puts in ``data/mixture_domains/``)::

    <domain>/train.txt, <domain>/eval.txt   for wikipedia, stackexchange, github, arxiv, book
    <domain>/eval.txt                       for commoncrawl, c4 (eval-only web-like domains)
    tasks/<task>.jsonl                      {"context", "choices", "label"} per line

Determinism: one ``random.Random`` per file, seeded from a constant and the file's name; Python's
Mersenne Twister and ``choice``/``shuffle`` are stable across platforms and Python 3 versions.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Callable

#: folder under data/ that generate() fills (tracked by data.dvc)
DATASET = "mixture_domains"

SEED = 20240607
TRAIN_CHARS = 80_000
EVAL_CHARS = 16_000
N_TASK_ITEMS = 96

TRAIN_DOMAINS = ("wikipedia", "stackexchange", "github", "arxiv", "book")
EVAL_ONLY_DOMAINS = ("commoncrawl", "c4")

_PLACES = ["Arvel", "Brisk", "Corlan", "Dunmere", "Estoria", "Falmouth", "Galdor", "Hollin", "Istra", "Jorvik",
           "Kelmar", "Lorwen", "Marrow", "Norvale", "Ostrin", "Pellar"]
_THINGS = ["river", "fortress", "university", "railway", "cathedral", "harbour", "province", "festival",
           "observatory", "museum", "canal", "monastery"]
_PEOPLE = ["Ada Venn", "Boris Hale", "Clara Moss", "Dmitri Falk", "Elena Roth", "Felix Ward", "Greta Lind",
           "Hugo Stern", "Ines Cole", "Jonas Pike"]
_ADJ = ["old", "large", "small", "northern", "famous", "quiet", "ancient", "modern", "coastal", "royal"]
_VERBS_PAST = ["founded", "rebuilt", "expanded", "described", "surveyed", "restored", "named", "visited"]
_TECH = ["python", "pandas", "numpy", "git", "docker", "bash", "sql", "regex", "json", "http"]
_TASKS_SE = ["sort a list of tuples", "read a csv file", "merge two branches", "parse a date string",
             "remove duplicate rows", "reverse a string", "count words in a file", "install a package",
             "join two tables", "escape a quote"]
_IDENT = ["data", "value", "items", "count", "total", "result", "index", "buffer", "node", "key", "row", "name"]
_FUNCS = ["load", "parse", "merge", "update", "compute", "filter", "render", "split", "encode", "check"]
_GREEK = ["alpha", "beta", "gamma", "delta", "lambda", "sigma", "theta", "omega", "mu", "epsilon"]
_MATH_WORDS = ["Lemma", "Theorem", "Proposition", "Corollary", "Definition"]
_NAMES = ["Mira", "Tom", "Lena", "Oskar", "Nell", "Arlo", "Wren", "Jude", "Ivy", "Silas"]
_BOOK_VERBS = ["walked", "whispered", "laughed", "waited", "turned", "listened", "smiled", "hurried", "paused"]
_BOOK_PLACES = ["the river", "the old mill", "the garden", "the kitchen", "the forest", "the quiet road",
                "the attic", "the harbour", "the market", "the hill"]
_FEELINGS = ["afraid", "happy", "tired", "curious", "lonely", "hopeful", "angry", "calm"]
_PRODUCTS = ["backpack", "kettle", "desk lamp", "running shoes", "coffee grinder", "phone case", "blender"]
_WEB_JUNK = ["Home | About | Contact", "Click here to subscribe!", "Cookies help us deliver our services.",
             "Share on Facebook", "Posted by admin", "Read more >>", "Copyright 2019 All rights reserved",
             "Free shipping on orders over $50", "Sign in | Register", "Tags: news, life, tips"]


def _wikipedia(rng: random.Random) -> str:
    place, thing, person = rng.choice(_PLACES), rng.choice(_THINGS), rng.choice(_PEOPLE)
    year = rng.randint(1450, 1990)
    return rng.choice([
        f"The {place} {thing.title()} is a {rng.choice(_ADJ)} {thing} in the province of {rng.choice(_PLACES)}. "
        f"It was {rng.choice(_VERBS_PAST)} in {year} by {person}.\n",
        f"{person} ({year}-{year + rng.randint(30, 80)}) was a scholar from {place}. "
        f"{person.split()[1]} {rng.choice(_VERBS_PAST)} the {rng.choice(_THINGS)} of {rng.choice(_PLACES)}.\n",
        f"{place} is a town with a population of {rng.randint(2, 900) * 100}. "
        f"Its {rng.choice(_ADJ)} {thing} dates from {year}.\n",
    ])


def _stackexchange(rng: random.Random) -> str:
    task, tech = rng.choice(_TASKS_SE), rng.choice(_TECH)
    votes = rng.randint(0, 250)
    return (f"Q: How do I {task} in {tech}? I tried `{rng.choice(_FUNCS)}()` but it fails with an error.\n"
            f"A ({votes} votes): Use `{tech}.{rng.choice(_FUNCS)}_{rng.choice(_IDENT)}()` instead, "
            f"then check the {rng.choice(_IDENT)}. See the docs for details.\n\n")


def _github(rng: random.Random) -> str:
    fn, a, b = rng.choice(_FUNCS), rng.choice(_IDENT), rng.choice(_IDENT)
    n = rng.randint(1, 9)
    body = rng.choice([
        f"    for i in range(len({a})):\n        {b} += {a}[i] * {n}\n    return {b}\n",
        f"    if {a} is None:\n        return []\n    return [x for x in {a} if x > {n}]\n",
        f"    {b} = {{}}\n    for k, v in {a}.items():\n        {b}[k] = v + {n}\n    return {b}\n",
    ])
    return f"def {fn}_{a}({a}, {b}={n}):\n{body}\n"


def _arxiv(rng: random.Random) -> str:
    g1, g2 = rng.choice(_GREEK), rng.choice(_GREEK)
    i, n = rng.choice("ijk"), rng.randint(2, 9)
    return rng.choice([
        f"\\begin{{equation}} f_{{\\{g1}}}(x) = \\sum_{{{i}=1}}^{{{n}}} \\{g2}_{i} x^{{{i}}} \\end{{equation}}\n",
        f"{rng.choice(_MATH_WORDS)} {rng.randint(1, 12)}. For every $\\{g1} > 0$ there exists $\\{g2}$ "
        f"such that $|x - y| < \\{g2}$ implies $|f(x) - f(y)| < \\{g1}$.\n",
        f"We prove that $\\int_0^{{{n}}} \\{g1}(t)\\,dt \\leq {n}\\,\\|\\{g2}\\|_{{2}}$ by induction on ${i}$.\n",
    ])


def _book(rng: random.Random) -> str:
    a, b = rng.choice(_NAMES), rng.choice(_NAMES)
    return rng.choice([
        f"{a} {rng.choice(_BOOK_VERBS)} to {rng.choice(_BOOK_PLACES)} and looked back at {b}. ",
        f"\"Are you {rng.choice(_FEELINGS)}?\" {b} asked. {a} {rng.choice(_BOOK_VERBS)} and said nothing. ",
        f"That night {a} felt {rng.choice(_FEELINGS)}, and the wind {rng.choice(_BOOK_VERBS)} over "
        f"{rng.choice(_BOOK_PLACES)}.\n",
    ])


def _c4(rng: random.Random) -> str:
    """Clean web prose: reviews and local news; closest to book + wikipedia."""
    return rng.choice([
        f"This {rng.choice(_PRODUCTS)} is great. I bought it for {rng.choice(_NAMES)} and we use it every day. "
        f"{rng.randint(3, 5)} stars.\n",
        f"The {rng.choice(_ADJ)} {rng.choice(_THINGS)} in {rng.choice(_PLACES)} will reopen next week, "
        f"the council said on {rng.choice(['Monday', 'Friday', 'Sunday'])}.\n",
    ])


def _commoncrawl(rng: random.Random) -> str:
    """Unfiltered web: boilerplate interleaved with fragments of every training domain."""
    parts = [rng.choice(_WEB_JUNK) + "\n"]
    parts.append(rng.choice([_wikipedia, _stackexchange, _github, _arxiv, _book, _c4])(rng))
    return "".join(parts)


GRAMMARS: dict[str, Callable[[random.Random], str]] = {
    "wikipedia": _wikipedia, "stackexchange": _stackexchange, "github": _github, "arxiv": _arxiv,
    "book": _book, "commoncrawl": _commoncrawl, "c4": _c4,
}


def _text(domain: str, part: str, n_chars: int) -> str:
    rng = random.Random(f"{SEED}-{domain}-{part}")
    pieces, size = [], 0
    while size < n_chars:
        piece = GRAMMARS[domain](rng)
        pieces.append(piece)
        size += len(piece)
    return "".join(pieces)[:n_chars]


def _scramble(rng: random.Random, text: str, fraction: float = 1.0) -> str:
    """Same characters, shuffled inside each word: in-alphabet but out-of-distribution.

    ``fraction`` < 1 scrambles only that share of the words (at least two): a subtler foil, so
    a two-way task is not solved by every model alike (a fully scrambled answer is)."""
    words = text.split(" ")
    chosen = range(len(words)) if fraction >= 1.0 else \
        rng.sample(range(len(words)), min(len(words), max(2, round(fraction * len(words)))))
    for i in chosen:
        chars = list(words[i])
        rng.shuffle(chars)
        words[i] = "".join(chars)
    return " ".join(words)


def _task_hellaswag(rng: random.Random) -> dict:
    """Pick the narrative ending of a book sentence among endings from code, maths and Q&A."""
    sentence = _book(rng).strip()
    cut = len(sentence) // 2
    endings = [sentence[cut:]]
    for other in (_github, _arxiv, _stackexchange):
        endings.append(other(rng).strip().replace("\n", " ")[: len(sentence) - cut])
    return _shuffled_item(rng, sentence[:cut], endings)


def _task_piqa(rng: random.Random) -> dict:
    """Two answers to a Q&A question: the real one and the same answer with the letters of a
    fifth of its words scrambled (fully scrambled foils saturated this task: every model scored 1)."""
    text = _stackexchange(rng)
    question, answer = text.split("\nA ", 1)
    answer = "A " + answer.strip()
    return _shuffled_item(rng, question + "\n", [answer, _scramble(rng, answer, fraction=0.2)])


def _task_arc(rng: random.Random) -> dict:
    """Complete an encyclopedic fact: the true clause vs three scrambled clauses."""
    sentence = _wikipedia(rng).strip()
    cut = sentence.index(". ") + 2 if ". " in sentence else len(sentence) // 2
    tail = sentence[cut:]
    return _shuffled_item(rng, sentence[:cut], [tail] + [_scramble(rng, tail) for _ in range(3)])


def _shuffled_item(rng: random.Random, context: str, choices: list[str]) -> dict:
    order = list(range(len(choices)))
    rng.shuffle(order)
    return {"context": context, "choices": [choices[i] for i in order], "label": order.index(0)}


TASKS: dict[str, Callable[[random.Random], dict]] = {
    "hellaswag_style": _task_hellaswag, "piqa_style": _task_piqa, "arc_easy_style": _task_arc,
}


def generate(out_dir: Path) -> None:
    """Write every domain's train/eval text and the three task files under ``out_dir``."""
    out_dir = Path(out_dir)
    for domain in TRAIN_DOMAINS + EVAL_ONLY_DOMAINS:
        (out_dir / domain).mkdir(parents=True, exist_ok=True)
        if domain in TRAIN_DOMAINS:
            (out_dir / domain / "train.txt").write_text(_text(domain, "train", TRAIN_CHARS), encoding="utf-8")
        (out_dir / domain / "eval.txt").write_text(_text(domain, "eval", EVAL_CHARS), encoding="utf-8")
    (out_dir / "tasks").mkdir(parents=True, exist_ok=True)
    for name, make in TASKS.items():
        rng = random.Random(f"{SEED}-task-{name}")
        lines = [json.dumps(make(rng), sort_keys=True, ensure_ascii=True) for _ in range(N_TASK_ITEMS)]
        (out_dir / "tasks" / f"{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
