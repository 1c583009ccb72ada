"""Generated corpora for the scale benchmark: N article-sized documents from a fixed seed, the real article among them."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

COUNTRIES = (
    "Austria Belgium Bulgaria Canada Croatia Czechia Finland Greece Hungary Iceland Ireland Italy Luxembourg Montenegro "
    "Norway Portugal Slovakia Slovenia Spain Sweden Turkey Albania Japan Brazil Kenya Chile India Mexico Egypt Vietnam"
).split()
FIRST = (
    "Anna Pedro Lena Marco Sofia Jonas Elif Tomas Ingrid Luca Maria Viktor Nora Pavel Clara Henrik Amira Felix".split()
)
LAST = "Novak Berg Rossi Silva Dumont Kowal Haas Lind Moreau Petrov Costa Varga Ahmed Horvat Jensen Ruiz Keller".split()
ROLES = (
    "finance minister",
    "trade minister",
    "energy minister",
    "prime minister",
    "foreign minister",
    "central bank governor",
)
TOPICS = (
    ("energy", "gas pipelines", "renewable capacity", "electricity prices", "grid investment"),
    ("trade", "tariffs", "export quotas", "customs rules", "shipping lanes"),
    ("climate", "emission targets", "carbon prices", "flood defences", "heat records"),
    ("health", "hospital budgets", "vaccine supply", "staff shortages", "drug prices"),
    ("technology", "chip factories", "data rules", "satellite launches", "cyber attacks"),
    ("farming", "grain harvests", "fertiliser costs", "water rights", "food prices"),
    ("transport", "rail links", "port expansion", "airline routes", "road tolls"),
    ("defence", "ammunition stocks", "air defence", "naval patrols", "border exercises"),
)
SENTENCES = (
    "{person}, {country}'s {role}, said that {a} would dominate the agenda for the coming {unit}.",
    "Officials in {city} expect {a} to rise by {n}% before the end of {year}.",
    "The debate over {a} has divided {country} and {country2} for {n2} {unit}s.",
    "{person} warned that {b} could cost {country} more than {n} billion euros.",
    "A report published in {year} found that {c} had fallen by {n}% since {year2}.",
    "Critics argue that {d} receive too little attention compared with {a}.",
    "{country2} has promised to match {country}'s plans on {b} within {n2} {unit}s.",
    "Talks on {c} will resume in {city} after a pause of {n2} {unit}s.",
    "Analysts say that {d} remain the main risk for {country}'s economy.",
)
CITIES = "Vienna Lisbon Oslo Madrid Athens Prague Dublin Helsinki Rome Warsaw Ottawa Tokyo Nairobi Santiago".split()


def _paragraph(rng: random.Random, topic) -> str:
    sentences = []
    for template in rng.sample(SENTENCES, 3):
        sentences.append(
            template.format(
                person=f"{rng.choice(FIRST)} {rng.choice(LAST)}",
                country=rng.choice(COUNTRIES),
                country2=rng.choice(COUNTRIES),
                role=rng.choice(ROLES),
                city=rng.choice(CITIES),
                a=topic[1],
                b=topic[2],
                c=topic[3],
                d=topic[4],
                n=rng.randint(2, 40),
                n2=rng.randint(2, 9),
                unit=rng.choice(("month", "year", "week")),
                year=rng.randint(2015, 2026),
                year2=rng.randint(2000, 2014),
            )
        )
    return " ".join(sentences)


def generate_document(rng: random.Random) -> str:
    """Return one article-sized (~4 kB, 11 paragraphs, 2 headings) synthetic news text."""
    topic = rng.choice(TOPICS)
    lines = [_paragraph(rng, topic) for _ in range(3)]
    lines.append(f"A Shift on {topic[0].capitalize()}")
    lines += [_paragraph(rng, topic) for _ in range(3)]
    lines.append(f"{rng.choice(COUNTRIES)} Moves First")
    lines += [_paragraph(rng, topic) for _ in range(5)]
    return "\n".join(lines) + "\n"


def build_haystack(folder: Path, size: int, article: Path, seed: int = 1234) -> Path:
    """Fill folder with size documents: the real article plus size-1 generated ones (same seed, same corpus)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    shutil.copy(article, folder / article.name)
    rng = random.Random(seed)
    for i in range(size - 1):
        (folder / f"generated-{i:04d}.txt").write_text(generate_document(rng), encoding="utf-8")
    return folder
