"""A templated-prompt dev set: 42 short-answer tasks, each one prompt template wrapped around a passage.

Real pools often hold *prompts* rather than bare instructions: a template around a passage, where the
passage's topic can drown the task. This set measures that. Everything in it was written for this project
(no prompt-template collection was used): 48 passages (``pie_retriever/pool/data/templated_passages.jsonl``,
8 topics × 6, each naming one person, one city and one year, with a clear positive or negative tone) and
the 42 templates of :data:`TASKS`. Same template = same task; the gold answer is computed from the
passage's annotations, so every task is short-answer (exact match).

The trap is built in: every passage stands in the pool under several *other* templates, so a query's own
passage is in the pool, always under another task. A retriever that matches on content finds the passage;
one that matches on task finds the template.

>>> from pie_retriever.evaluation.bench.templated import templated_set
>>> pool, queries = templated_set()
>>> len(pool), len(queries), len({d.metadata["task"] for d in pool})
(336, 336, 42)
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any, Callable

from pie_retriever.types import Demonstration

__all__ = ["PASSAGES_FILE", "TASKS", "TemplateTask", "load_passages", "sentence_count", "templated_set"]

PASSAGES_FILE = "templated_passages.jsonl"
TOPICS = ("sports", "science", "business", "health", "travel", "food", "technology", "music")
_CODES = {"sports": "SPO", "science": "SCI", "business": "BUS", "health": "HEA", "travel": "TRA", "food": "FOO",
          "technology": "TEC", "music": "MUS"}
_SPANISH = {"sports": "deportes", "science": "ciencia", "business": "negocios", "health": "salud", "travel": "viajes",
            "food": "comida", "technology": "tecnología", "music": "música"}
_EDGE = " \t\"'.,;:!?()"


def sentence_count(text: str) -> int:
    """Sentences = runs ending in ``.``, ``!`` or ``?`` followed by a space or the end."""
    return len(re.findall(r"[.!?](?=\s|$)", text))


def _first(p: dict) -> str:
    return p["text"].split()[0].strip(_EDGE)


def _last(p: dict) -> str:
    return p["text"].split()[-1].strip(_EDGE)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


@dataclass(frozen=True)
class TemplateTask:
    """A template (``{text}`` = the passage, ``{asked}`` = a value asked about) and its answer function.

    ``asks``: which passage field ``{asked}`` draws from (half the time the passage's own value, else another
    passage's), or None.
    """

    template: str
    answer: Callable[[dict, Any], str]
    asks: str | None = None


#: task id → template and answer. Written for this project.
TASKS: dict[str, TemplateTask] = {
    # topic
    "topic-word": TemplateTask("Read the passage and name its topic. Choose one of: sports, science, business, health, travel, "
                               "food, technology, music.\n\nPassage: {text}\n\nTopic:", lambda p, a: p["topic"]),
    "topic-code": TemplateTask("{text}\n\nWhich newspaper section would print this? Reply with the section code: SPO, SCI, BUS, "
                               "HEA, TRA, FOO, TEC or MUS.", lambda p, a: _CODES[p["topic"]]),
    "topic-yesno": TemplateTask("Passage: {text}\n\nIs this passage about {asked}? Answer yes or no.",
                                lambda p, a: _yes(a == p["topic"]), "topic"),
    "topic-upper": TemplateTask("Label the article below with its category in capital letters (SPORTS, SCIENCE, BUSINESS, "
                                "HEALTH, TRAVEL, FOOD, TECHNOLOGY, MUSIC).\n\nArticle:\n{text}", lambda p, a: p["topic"].upper()),
    "topic-digit": TemplateTask("Passage: {text}\n\nCategory number? (1 sports, 2 science, 3 business, 4 health, 5 travel, "
                                "6 food, 7 technology, 8 music)", lambda p, a: str(TOPICS.index(p["topic"]) + 1)),
    "topic-spanish": TemplateTask("¿De qué trata el texto? Responde con una palabra: deportes, ciencia, negocios, salud, viajes, "
                                  "comida, tecnología o música.\n\n{text}", lambda p, a: _SPANISH[p["topic"]]),
    # tone
    "tone-word": TemplateTask("What is the tone of this text, positive or negative?\n\n{text}", lambda p, a: p["sentiment"]),
    "tone-stars": TemplateTask("{text}\n\nIf this were a review, would it get 1 star or 5 stars? Answer with the number only.",
                               lambda p, a: "5" if p["sentiment"] == "positive" else "1"),
    "tone-goodbad": TemplateTask("Text: {text}\n\nIs the news in this text good or bad?",
                                 lambda p, a: "good" if p["sentiment"] == "positive" else "bad"),
    "tone-posneg": TemplateTask("Classify the sentiment of the passage as POS or NEG.\n\n\"{text}\"",
                                lambda p, a: "POS" if p["sentiment"] == "positive" else "NEG"),
    "tone-happysad": TemplateTask("Would the people in this story feel happy or sad? Reply happy or sad.\n\n{text}",
                                  lambda p, a: "happy" if p["sentiment"] == "positive" else "sad"),
    "tone-french": TemplateTask("{text}\n\nLe ton de ce texte est-il positif ou négatif ?",
                                lambda p, a: "positif" if p["sentiment"] == "positive" else "négatif"),
    "tone-binary": TemplateTask("Rate the mood of the passage: 0 for negative, 1 for positive.\n\nPassage:\n{text}",
                                lambda p, a: "1" if p["sentiment"] == "positive" else "0"),
    # person
    "person-full": TemplateTask("Who is the person named in the passage? Give the full name.\n\nPassage: {text}",
                                lambda p, a: p["person"]),
    "person-surname": TemplateTask("{text}\n\nWhat is the family name of the person mentioned above?",
                                   lambda p, a: p["person"].split()[-1]),
    "person-first": TemplateTask("Passage:\n{text}\n\nWrite only the first name of the person in the passage.",
                                 lambda p, a: p["person"].split()[0]),
    "person-initials": TemplateTask("Give the initials of the person mentioned in the text, written like J.S.\n\nText: {text}",
                                    lambda p, a: "".join(w[0] + "." for w in p["person"].split())),
    "person-reverse": TemplateTask("{text}\n\nWrite the name of the person in the form Surname, First name.",
                                   lambda p, a: f"{p['person'].split()[-1]}, {p['person'].split()[0]}"),
    "person-upper": TemplateTask("Extract the name of the person from the text and write it in capital letters.\n\n{text}",
                                 lambda p, a: p["person"].upper()),
    "person-yesno": TemplateTask("Text: {text}\n\nIs {asked} mentioned in the text? Answer yes or no.",
                                 lambda p, a: _yes(a == p["person"]), "person"),
    # place
    "city": TemplateTask("In which city does the story in the passage take place?\n\n{text}", lambda p, a: p["city"]),
    "country": TemplateTask("{text}\n\nIn which country is the city mentioned in this passage?", lambda p, a: p["country"]),
    "city-yesno": TemplateTask("Does the passage below mention {asked}? Answer yes or no.\n\nPassage: {text}",
                               lambda p, a: _yes(a == p["city"]), "city"),
    "city-lower": TemplateTask("Text: {text}\n\nWrite the name of the city in the text in lowercase letters.",
                               lambda p, a: p["city"].lower()),
    "city-letter": TemplateTask("{text}\n\nWith which letter does the name of the city in the passage begin?",
                                lambda p, a: p["city"][0]),
    # year
    "year": TemplateTask("Which year is mentioned in the passage?\n\n{text}", lambda p, a: str(p["year"])),
    "decade": TemplateTask("{text}\n\nIn which decade did this happen? Answer like 1970s.", lambda p, a: f"{p['year'] // 10 * 10}s"),
    "century": TemplateTask("Text: {text}\n\nIn which century is the year in the text? Answer 20th or 21st.",
                            lambda p, a: "20th" if p["year"] <= 2000 else "21st"),
    "year-next": TemplateTask("What year comes right after the year mentioned in the passage?\n\nPassage: {text}",
                              lambda p, a: str(p["year"] + 1)),
    "year-before2000": TemplateTask("{text}\n\nDid the events described happen before the year 2000? Answer yes or no.",
                                    lambda p, a: _yes(p["year"] < 2000)),
    "year-shortform": TemplateTask("Write the year from the passage with an apostrophe and two digits, like '85.\n\n{text}",
                                   lambda p, a: f"'{p['year'] % 100:02d}"),
    # form of the text
    "first-word": TemplateTask("What is the first word of the following passage?\n\n{text}", lambda p, a: _first(p)),
    "last-word": TemplateTask("{text}\n\nWhat is the last word of the passage above?", lambda p, a: _last(p)),
    "first-word-upper": TemplateTask("Write the first word of the text in capital letters.\n\nText: {text}", lambda p, a: _first(p).upper()),
    "sentence-count": TemplateTask("How many sentences does this passage have? Answer with a number.\n\n{text}",
                                   lambda p, a: str(sentence_count(p["text"]))),
    "first-letter": TemplateTask("Passage: {text}\n\nWhat letter does the passage start with?", lambda p, a: p["text"][0]),
    "second-word": TemplateTask("{text}\n\nWhat is the second word of the passage?", lambda p, a: p["text"].split()[1].strip(_EDGE)),
    # combinations
    "person-city": TemplateTask("{text}\n\nWho is mentioned and where? Answer as Name, City.",
                                lambda p, a: f"{p['person']}, {p['city']}"),
    "city-year": TemplateTask("Give the city and the year mentioned in the passage in the form City (Year).\n\nPassage: {text}",
                              lambda p, a: f"{p['city']} ({p['year']})"),
    "topic-tone": TemplateTask("{text}\n\nGive the topic and the tone of the passage, like sports/positive.",
                               lambda p, a: f"{p['topic']}/{p['sentiment']}"),
    "person-year": TemplateTask("Text: {text}\n\nName the person and the year, separated by a comma.",
                                lambda p, a: f"{p['person']}, {p['year']}"),
    "country-upper": TemplateTask("Write the country where the passage takes place in capital letters.\n\n{text}",
                                  lambda p, a: p["country"].upper()),
}


def load_passages() -> list[dict]:
    """The 48 annotated passages of ``pie_retriever/pool/data/templated_passages.jsonl``."""
    text = resources.files("pie_retriever.pool.data").joinpath(PASSAGES_FILE).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _item(task_id: str, task: TemplateTask, p: dict, passages: list[dict], rng: random.Random, kind: str, n: int) -> Demonstration:
    asked = None
    if task.asks is not None:
        others = sorted({q[task.asks] for q in passages} - {p[task.asks]})
        asked = p[task.asks] if rng.random() < 0.5 else rng.choice(others)
    prompt = task.template.format(text=p["text"], asked=asked)
    return Demonstration(prompt, "", task.answer(p, asked), id=f"{kind}-{task_id}-{n:02d}",
                         metadata={"task": task_id, "topic": p["topic"], "passage": p["id"], "set": "templated"})


def templated_set(n_pool: int = 8, n_queries: int = 8, seed: int = 0) -> tuple[list[Demonstration], list[Demonstration]]:
    """``(pool, queries)``: per task, ``n_pool`` demonstrations and ``n_queries`` queries on disjoint passages.

    Passages are drawn per task (seeded); a query's passage is never in its own task's pool, but it is in the
    pool under other tasks.
    """
    passages = load_passages()
    if n_pool + n_queries > len(passages):
        msg = f"n_pool + n_queries must be at most {len(passages)} (the passages), got {n_pool} + {n_queries}."
        raise ValueError(msg)
    pool: list[Demonstration] = []
    queries: list[Demonstration] = []
    for task_id, task in TASKS.items():
        rng = random.Random(f"{seed}-{task_id}")
        order = rng.sample(passages, n_pool + n_queries)
        pool += [_item(task_id, task, p, passages, rng, "t", i) for i, p in enumerate(order[:n_pool])]
        queries += [_item(task_id, task, p, passages, rng, "tq", i) for i, p in enumerate(order[n_pool:])]
    return pool, queries
