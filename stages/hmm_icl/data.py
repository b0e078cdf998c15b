"""Embedded default data of the hmm_icl study: a small TinyStories-style corpus.

Why generated: the smoke profile must run on a fresh clone with no network, and ``data.dvc``
must hash identically everywhere, so the text comes from templates driven by
``random.Random(SEED)`` (stable across Python versions and machines). It has the layout of the
TinyStories slice in ``../shared/data/tinystories/val.txt`` (plain prose, blocks separated by a
blank line), so one reader handles both. The vocabulary is small and Zipf-like (a few very
frequent function words, many rarer names and nouns), which is what makes a top-K vocabulary
with an unknown token meaningful in the smoke run.
"""

from __future__ import annotations

import random
from pathlib import Path

#: folder under data/ that generate() fills (tracked by data.dvc)
DATASET = "tinystories_like"

SEED = 20250120
N_STORIES = 420
FILE_NAME = "stories.txt"

NAMES = ["Lily", "Tom", "Ben", "Sue", "Max", "Mia", "Sam", "Anna", "Tim", "Lucy", "Jack", "Zoe", "Leo", "Emma"]
ANIMALS = ["cat", "dog", "bird", "bunny", "frog", "duck", "bear", "fox", "mouse", "lion", "fish", "owl"]
PLACES = ["park", "forest", "garden", "beach", "house", "farm", "lake", "hill", "yard", "school"]
THINGS = ["ball", "kite", "toy", "box", "hat", "cake", "book", "flower", "car", "boat", "stick", "apple"]
ADJS = ["big", "small", "red", "happy", "shiny", "soft", "pretty", "funny", "old", "little", "blue", "kind"]
FEELINGS = ["happy", "sad", "scared", "proud", "excited", "tired", "angry", "surprised"]
VERBS = ["play", "run", "jump", "swim", "sing", "dance", "climb", "read", "hide", "look"]
QUOTES = ["Can I play too?", "Look at this!", "Thank you, friend.", "Let's go home.", "I am sorry.",
          "This is so much fun!", "Where are you?", "Be careful!", "I love you, mom."]
MORALS = ["to always share", "to be kind to others", "to say sorry", "to help your friends",
          "to be brave", "to listen to your mom"]


def _pronoun(name: str) -> tuple[str, str]:
    girls = {"Lily", "Sue", "Mia", "Anna", "Lucy", "Zoe", "Emma"}
    return ("she", "her") if name in girls else ("he", "his")


def _story(rng: random.Random) -> list[str]:
    """One story: two to four paragraphs of template sentences about one hero."""
    hero, friend = rng.sample(NAMES, 2)
    he, his = _pronoun(hero)
    animal, place, thing = rng.choice(ANIMALS), rng.choice(PLACES), rng.choice(THINGS)
    opener = rng.choice([
        f"Once upon a time, there was a {rng.choice(ADJS)} {animal} named {hero}.",
        f"Once upon a time, in a {rng.choice(ADJS)} {place}, there lived a {animal} named {hero}.",
        f"One day, {hero} went to the {place} with {his} {rng.choice(ADJS)} {thing}.",
    ])
    paragraphs: list[list[str]] = [[opener]]
    for _ in range(rng.randrange(2, 5)):
        para: list[str] = []
        for _ in range(rng.randrange(2, 6)):
            kind = rng.randrange(9)
            if kind == 0:
                para.append(f"{hero} liked to {rng.choice(VERBS)} in the {rng.choice(PLACES)}.")
            elif kind == 1:
                para.append(f"{he.capitalize()} saw a {rng.choice(ADJS)} {rng.choice(THINGS)} near the {place}.")
            elif kind == 2:
                para.append(f"{hero} was very {rng.choice(FEELINGS)}.")
            elif kind == 3:
                para.append(f'{friend} said, "{rng.choice(QUOTES)}"')
            elif kind == 4:
                para.append(f"{hero} and {friend} wanted to {rng.choice(VERBS)} together.")
            elif kind == 5:
                para.append(f"The {rng.choice(ANIMALS)} had a {rng.choice(ADJS)} {rng.choice(THINGS)}.")
            elif kind == 6:
                para.append(f"{he.capitalize()} gave {his} {thing} to {friend}, and {friend} smiled.")
            elif kind == 7:
                para.append(f"Then, {hero} and {friend} played with the {rng.choice(THINGS)} all day.")
            else:
                para.append(f"{friend} felt {rng.choice(FEELINGS)}, so {hero} helped {friend}.")
        paragraphs.append(para)
    ending = rng.choice([
        f"The moral of the story is {rng.choice(MORALS)}.",
        f"From that day on, {hero} and {friend} were best friends.",
        f"{hero} went home and slept, very {rng.choice(FEELINGS)}.",
    ])
    paragraphs[-1].append(ending)
    return [" ".join(p) for p in paragraphs]


def corpus_text(seed: int = SEED, n_stories: int = N_STORIES) -> str:
    """The whole corpus: paragraphs separated by blank lines, as in the TinyStories slice."""
    rng = random.Random(seed)
    blocks: list[str] = []
    for _ in range(n_stories):
        blocks.extend(_story(rng))
    return "\n\n".join(blocks) + "\n"


def generate(out_dir: Path) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / FILE_NAME).write_text(corpus_text(), encoding="utf-8")
