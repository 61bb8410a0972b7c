"""The rule set behind IEB-style ``verb|noun`` task labels: text preparation and parse-tree rules.

The rules read a spaCy dependency parse (tokens with ``pos_``, ``dep_``, ``lemma_``, ``children``); they never
load spaCy themselves: :func:`pie_retriever.labeling.api.load_pipeline` loads the pipeline and hands its
lemma tables to :func:`set_lexicon`. The entry points are :func:`prepare` (text -> the string to parse),
:func:`is_parsable` and :func:`label_doc` (parsed doc -> ``"verb|noun"``).

Conventions learnt from IEB: question forms, ``Given ...,`` preambles, polite forms, role-play context
sentences, control verbs such as ``I want you to ...``; ``be|way`` for "What would be the best way ...",
``yes-no|task``/``yes-no|knowledge`` for "Is ...?" questions, ``noun|knowledge`` for verbless queries,
``<verb>|math`` for bare math objects, the first noun of a compound ("news article" -> news) and ``list``
for "a list of X".
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

__all__ = ["FALLBACK_LABEL", "NONE", "is_parsable", "label_doc", "normalize_space", "prepare", "set_lexicon"]

#: Label returned when no verb can be found (empty, non-linguistic or unparsable text).
FALLBACK_LABEL = "none|none"
#: Placeholder for a missing verb or noun.
NONE = "none"
#: Only the beginning of an instruction decides its task; long inputs are cut here (speed).
_MAX_CHARS = 600

# --------------------------------------------------------------------------------------------------
# lexicon (filled from the spaCy pipeline's lemma tables by set_lexicon)

_VERB_INDEX: frozenset[str] = frozenset()
_NOUN_INDEX: frozenset[str] = frozenset()


def set_lexicon(verbs: Iterable[str], nouns: Iterable[str]) -> None:
    """Install the known verb and noun lemmas (from the pipeline's ``lemma_index`` table)."""
    global _VERB_INDEX, _NOUN_INDEX
    _VERB_INDEX = frozenset(verbs) | _EXTRA_VERBS
    _NOUN_INDEX = frozenset(nouns)


# --------------------------------------------------------------------------------------------------
# word lists (general English, not tied to one benchmark's labels)

_WH = {"what", "why", "how", "who", "whom", "whose", "when", "where", "which"}
_AUX_FIRST = {
    "can", "could", "would", "will", "shall", "should", "may", "might", "must",
    "do", "does", "did", "is", "are", "was", "were", "am", "have", "has", "had",
}
_MODALS = {"would", "will", "could", "should", "might", "may", "can", "shall", "must"}
# subjects that make a question about how *someone* does something (a task), not a fact
_PERSON_SUBJ = {
    "you", "i", "we", "one", "someone", "somebody", "anyone", "anybody", "person", "people", "u",
    "me", "us", "everyone", "they", "user", "student", "child", "kid", "beginner", "company",
}
# plural-looking nouns the lemmatiser would damage (data -> datum, politics -> politic)
_KEEP_FORM = {
    "data", "politics", "news", "species", "series", "physics", "mathematics", "economics", "ethics",
    "athletics", "gymnastics", "linguistics", "statistics", "analytics", "genetics", "electronics",
    "logistics", "graphics", "media",
}
_TIME_NOUNS = {
    "today", "tomorrow", "yesterday", "tonight", "day", "days", "week", "weeks", "month", "months", "year",
    "years", "summer", "winter", "spring", "autumn", "fall", "night", "morning", "evening", "weekend",
    "time", "times", "hour", "hours", "minute", "minutes", "second", "seconds",
}
# "Tell me the following", "Rewrite the above": no task noun
_PLACEHOLDER_NOUNS = {"following", "below", "above", "given", "follow"}
# words that point at an input ("Is *this* sentence ...?"): a yes/no question about it is a task
_DEICTIC = {"this", "these", "following", "given", "above", "below", "that", "those"}
# object pronouns that stand for the input itself ("Translate it into French" -> translate|none)
_IT_PRON = {"it", "them", "this", "these", "that", "those"}
# indefinite pronouns that IEB keeps as the "noun" (help|someone, mean|something)
_INDEF_PRON = {"something", "someone", "somebody", "anything", "anyone", "anybody", "everything", "everyone"}
# verbs whose xcomp carries the real task: "I want you to write ...", "you need to find ..."
_CONTROL = {
    "want", "need", "have", "go", "plan", "try", "like", "love", "wish", "hope", "intend", "ask",
    "require", "expect", "help", "would", "able", "attempt", "be", "get", "let", "allow", "prefer",
    "begin", "continue", "supposed", "suppose", "invite", "instruct", "encourage", "challenge", "task",
    "request", "assign",
}
# verbs that introduce a clause: "Explain how you would X", "Describe how to X", "Tell me what I should do"
_REPORT = {"explain", "describe", "tell", "show", "write", "discuss", "say", "share", "illustrate", "detail"}
# role-play / context sentences to skip when a later sentence holds the task
_CONTEXT_VERBS = {"imagine", "assume", "pretend", "consider", "picture"}
_SUPPOSE_VERBS = {"suppose"}
# words that start sentences but are not imperative verbs even if the lemma table has them
_NOT_IMPERATIVE = _AUX_FIRST | {
    "please", "kindly", "let", "here", "given", "well", "now", "so", "then",
    # rarely verbs at the start of an instruction ("Best airline in the world", "Short summary of ...")
    "best", "top", "short", "good", "great", "better", "worst", "last", "most", "more", "less", "few",
    "one", "two", "three", "yes", "no", "hello", "hi", "thanks", "thank", "sorry",
}
_EXTRA_VERBS = frozenset({"brainstorm", "paraphrase", "summarize", "categorize", "reformulate", "rephrase"})
_LEAD_WORDS = re.compile(
    r"^\s*(?:(?:please|kindly|now|also|then|finally|lastly|additionally|firstly|secondly|"
    r"ok(?:ay)?|hi|hello|hey)\s*[,:!\-]?\s+|(?:task|instruction|question|prompt|q|next|first|so)\s*[,:]\s*)+",
    re.IGNORECASE,
)
# "Given a sentence, classify ..." / "In this task, you need to ..." / "From the list, select ..."
_PREAMBLE = re.compile(
    r"^\s*(?:given|in|from|using|based on|for|with|according to|as|after|before|by|on|at|within|"
    r"without|under|if|when|while|once)\b[^,.?!:;\n]{0,160},\s*(?=\S)",
    re.IGNORECASE,
)
_WS = re.compile(r"\s+")
# words allowed in a bare math object ("Multiply 3 by 6", "Evaluate log_3(81)")
_MATH_WORDS = {
    "and", "by", "the", "following", "expression", "log", "sqrt", "sin", "cos", "tan", "where", "when",
    "from", "into", "with", "for", "product", "sum", "value",
}
_RE_PREFIX = re.compile(r"^re-(?=[a-z])", re.IGNORECASE)
_NAMED = re.compile(
    r"(\b([A-Za-z]+)),?\s*(?:\"[^\"]{1,80}\"|\u201c[^\u201d]{1,80}\u201d|(?<![A-Za-z])'[^']{1,60}'(?![A-Za-z])|\u2018[^\u2019]{1,60}\u2019)"
)
_QUOTED = re.compile(r'"[^"]*(?:"|$)|\u201c[^\u201d]*(?:\u201d|$)')


# --------------------------------------------------------------------------------------------------
# text preparation


def _prepare(text: str) -> str:
    """Normalise the text before parsing.

    Collapses whitespace, cuts long text, drops polite lead words (``Please``, ``Now``) and
    ``Given ...,`` / ``In this task,`` preambles, removes long quoted passages and, when the text starts
    with a verb or a question word, the content after the first colon (``Correct the following sentence:
    They is amazing`` -> ``Correct the following sentence``).
    """
    t = _WS.sub(" ", text).strip()
    if len(t) > _MAX_CHARS:
        cut = t.rfind(" ", 0, _MAX_CHARS)
        t = t[: cut if cut > 0 else _MAX_CHARS]
    for _ in range(2):
        t = _LEAD_WORDS.sub("", t)
        m = _PREAMBLE.match(t)
        if m and len(t) > m.end() + 2:
            t = t[m.end():]
    t = _RE_PREFIX.sub("", t)
    # long quoted passages (3+ words) are content, not instruction; unclosed quotes run to the end
    t = _QUOTED.sub(lambda m: _unquote(m, t), t)
    # a quoted name right after a noun is an apposition: 'Define the term "data literacy"' -> the term
    t = _NAMED.sub(lambda m: m.group(1) if m.start() > 0 and m.group(2).lower() in _NOUN_INDEX else m.group(0), t)
    t = _WS.sub(" ", t).strip()
    w = _first_word(t)
    colon = t.find(":")
    if colon > 0 and (w in _VERB_INDEX or w in _WH or w in _AUX_FIRST) and len(t[:colon].split()) >= 2:
        t = t[:colon].rstrip() + "."
    if t[:1].islower():
        t = t[:1].upper() + t[1:]
    return t


def _unquote(m: re.Match[str], t: str) -> str:
    """A quoted passage of 3+ words is dropped; right after the leading verb it becomes ``it``."""
    if len(m.group(0).split()) < 3:
        return m.group(0)
    before = t[: m.start()].split()
    return "it" if len(before) == 1 else ""


def _first_word(t: str) -> str:
    m = re.match(r"[A-Za-z][A-Za-z\-']*", t)
    return m.group(0).lower() if m else ""


def _imperative_form(t: str) -> str | None:
    """``"Please " + t`` when ``t`` starts with a word that can be a verb (helps the tagger)."""
    w = _first_word(t)
    if not w or w in _NOT_IMPERATIVE or w in _WH:
        return None
    if w not in _VERB_INDEX:
        return None
    return "Please " + t[:1].lower() + t[1:]


# --------------------------------------------------------------------------------------------------
# parse-tree rules


def _lemma(tok: Any) -> str:
    if tok.lower_ in _KEEP_FORM:
        return tok.lower_
    lem = tok.lemma_.lower().strip()
    if not lem or not re.fullmatch(r"[a-z][a-z\-']*", lem):
        lem = tok.lower_
    return lem


def _compound_first(tok: Any) -> Any:
    """IEB keeps the first noun of a noun compound: "news article" -> news, "math problem" -> math."""
    cur = tok
    for _ in range(4):
        comps = [c for c in cur.children if c.dep_ == "compound" and c.i < cur.i and c.pos_ in ("NOUN",)]
        if not comps:
            break
        cur = min(comps, key=lambda c: c.i)
    return cur


def _nominal(tok: Any, *, partitive: bool = False) -> str | None:
    """The noun a token stands for, if any (follows ``one of the X`` to ``X``)."""
    low = tok.lower_
    if low in _PLACEHOLDER_NOUNS and not (partitive and low == "following"):
        return None  # "Tell me the following" has no task noun, "each of the following" does (IEB)
    if tok.pos_ in ("NOUN", "PROPN"):
        head = _compound_first(tok)
        if len(low) < 2:
            return None
        if re.fullmatch(r"[a-z][a-z\-']+", head.lower_):
            return _lemma(head)
        if re.fullmatch(r"[a-z][a-z\-']*", low):
            return _lemma(tok)
        return None
    if low in _INDEF_PRON:
        return low
    # a mis-tagged noun heading a noun phrase: "change the verb tense" (tense/ADJ), "change all verbs"
    if (
        tok.pos_ in ("ADJ", "VERB")
        and tok.dep_ in ("dobj", "pobj")
        and any(c.dep_ in ("det", "amod", "compound", "poss", "nummod") for c in tok.children)
    ):
        for cand in (low, low[:-1] if low.endswith("s") else low):
            if cand in _NOUN_INDEX:
                head = _compound_first(tok)
                return _lemma(head) if head is not tok else cand
    if tok.pos_ in ("NUM", "PRON", "DET", "ADJ"):
        for c in tok.children:
            if c.dep_ == "prep" and c.lower_ == "of":
                for p in c.children:
                    if p.dep_ == "pobj":
                        return _nominal(p, partitive=tok.lower_ in ("each", "all", "any"))
    return None


def _subject(v: Any) -> Any | None:
    for c in v.children:
        if c.dep_ in ("nsubj", "nsubjpass", "expl", "csubj"):
            return c
    return None


def _is_person(tok: Any | None) -> bool:
    if tok is None:
        return False
    return tok.lower_ in _PERSON_SUBJ or _lemma(tok) in _PERSON_SUBJ


def _has_wh(v: Any, words: set[str]) -> bool:
    return any(c.lower_ in words for c in v.children)


def _wh_noun(clause: Any) -> str | None:
    """Noun asked about in a wh-clause: "which city ...", "what year ...", "how much money ..."."""
    for t in clause.subtree:
        if t.pos_ in ("NOUN", "PROPN") and any(
            c.lower_ in ("which", "what", "whose") and c.dep_ in ("det", "amod") for c in t.children
        ):
            return _nominal(t)
        if t.pos_ in ("NOUN", "PROPN") and any(
            c.lower_ in ("many", "much") and any(g.lower_ == "how" for g in c.children) for c in t.children
        ):
            return _nominal(t)
        if t.lower_ == "which" and any(c.dep_ == "prep" and c.lower_ == "of" for c in t.children):
            return _nominal(t)
    return None


def _clause_noun(c: Any, depth: int = 0) -> str | None:
    """Noun of a complement clause ("Classify whether the quote is ...", "Tell me if it's spam")."""
    n = _wh_noun(c)
    if n:
        return n
    for s in c.children:
        if s.dep_ in ("nsubj", "nsubjpass") and s.lower_ not in _WH:
            n = _nominal(s)
            if n:
                return n
    for a in c.children:
        if a.dep_ in ("attr", "dobj", "oprd") and a.lower_ not in _WH:
            n = _nominal(a)
            if n:
                return n
    preps = [a for a in c.children if a.dep_ in ("agent", "prep")]
    for a in c.children:  # "what is wrong with this sentence"
        if a.dep_ == "acomp":
            preps += [x for x in a.children if x.dep_ == "prep"]
    for a in preps:
        for p in a.children:
            if p.dep_ == "pobj":
                n = _nominal(p)
                if n:
                    return n
    if depth < 2:  # "Explain what makes this person unique"
        for a in c.children:
            if a.dep_ == "ccomp":
                n = _clause_noun(a, depth + 1)
                if n:
                    return n
    return None


def _is_clause(c: Any) -> bool:
    if c.dep_ == "ccomp":
        return True
    if c.dep_ in ("advcl", "xcomp", "dobj") and c.pos_ in ("VERB", "AUX"):
        return any(a.lower_ in ("if", "whether") for a in c.children) or _has_wh(c, _WH)
    return False


def _math_after(v: Any) -> bool:
    """True when what follows verb ``v`` in its sentence is a bare math expression ("Multiply 3 by 6")."""
    rest = v.doc[v.i + 1 : v.sent.end].text.strip()
    if not rest or not re.search(r"\d", rest):
        return False
    words = [w for w in re.findall(r"[A-Za-z]{3,}", rest) if w.lower() not in _MATH_WORDS]
    return len(words) == 0


def _object(v: Any, *, allow_clause: bool = True) -> str | None:
    """Head noun of the object of verb ``v`` (dobj, else clause noun, else prepositional object)."""
    pron_obj = False
    for c in v.children:
        if c.dep_ in ("dobj", "obj"):
            if c.lower_ in _WH:
                continue
            n = _nominal(c)
            if n:
                return n
            if c.lower_ in _IT_PRON:
                pron_obj = True
    for c in v.children:
        if c.dep_ in ("attr", "oprd") and c.pos_ in ("NOUN", "PROPN"):
            n = _nominal(c)
            if n:
                return n
    for c in v.children:  # "Brainstorm one way to ..." (not "next month", "tomorrow")
        if c.dep_ == "npadvmod" and c.pos_ in ("NOUN", "PROPN") and c.lower_ not in _TIME_NOUNS:
            n = _nominal(c)
            if n:
                return n
    if allow_clause and not pron_obj:
        for c in v.children:
            if _is_clause(c):
                n = _clause_noun(c)
                if n:
                    return n
    for c in v.children:
        # "Translate it into French": the target of the verb is not its object
        if c.dep_ == "prep":
            for p in c.children:
                if p.dep_ == "pobj" and not (pron_obj and p.pos_ == "PROPN"):
                    n = _nominal(p)
                    if n is None and p.pos_ == "PRON":  # "in yourself or your life"
                        n = next((_nominal(x) for x in p.children if x.dep_ == "conj" and _nominal(x)), None)
                    if n:
                        return n
    if _math_after(v):
        return "math"
    return None


def _has_to(v: Any) -> bool:
    return any(a.dep_ == "aux" and a.lower_ == "to" for a in v.children)


def _descend(v: Any, depth: int = 0) -> Any:
    """Follow control verbs, reporting verbs and coordination to the verb that carries the task."""
    if depth > 6:
        return v
    lem = _lemma(v)
    # "I want you to write", "you need to read", "you have been asked to give", "help me find"
    if lem in _CONTROL:
        for c in v.children:
            if c.dep_ == "xcomp" and c.pos_ in ("VERB", "AUX"):
                return _descend(c, depth + 1)
            if c.dep_ == "ccomp" and c.pos_ == "VERB" and (lem in ("help", "let") or _has_to(c)):
                return _descend(c, depth + 1)
    # "Explain how you would handle ...", "Describe how to make ...", "Tell me what I should do to ..."
    if lem in _REPORT:
        for c in v.children:
            if c.dep_ in ("ccomp", "advcl", "xcomp", "dobj") and c.pos_ in ("VERB", "AUX"):
                if not _has_wh(c, {"how", "what"}):
                    continue
                subj = _subject(c)
                if (subj is None and _has_to(c)) or _is_person(subj):
                    if _lemma(c) == "be":
                        continue
                    inner = _descend(c, depth + 1)
                    # "Describe what you do on weekends" stays describe|weekend, but
                    # "Tell me what I should do to improve my life" is improve|life
                    if _has_wh(c, {"how"}) or inner is not c:
                        return inner
    # "What can you do to save money" / "What should a person do to get the job"
    if lem == "do":
        for c in v.children:
            if c.dep_ in ("advcl", "xcomp") and c.pos_ == "VERB" and _has_to(c):
                return _descend(c, depth + 1)
    # "Identify and correct any errors": the object belongs to the second verb
    if not any(c.dep_ in ("dobj", "ccomp", "advcl", "prep", "xcomp", "dative") for c in v.children):
        for c in v.children:
            if c.dep_ == "conj" and c.pos_ in ("VERB", "ADJ") and _object(c, allow_clause=False) is not None:
                return c
    return v


def _chain_subject(top: Any, v: Any) -> Any | None:
    """First explicit subject on the path from ``top`` down to ``v`` (the one who does the task)."""
    path = []
    cur = v
    while cur is not None:
        path.append(cur)
        if cur.i == top.i or cur.head.i == cur.i:
            break
        cur = cur.head
    for node in reversed(path):
        s = _subject(node)
        if s is not None and s.lower_ not in _WH:
            return s
    return None


def _modal(v: Any) -> bool:
    return any(c.dep_ == "aux" and c.lower_ in _MODALS for c in v.children)


def _verb_token(toks: list[Any]) -> Any | None:
    """Leading word the tagger missed as a verb ("Rank countries ..." tagged as a noun compound)."""
    t = toks[0]
    if t.pos_ in ("VERB", "AUX") or t.lower_ not in _VERB_INDEX or t.lower_ in _NOT_IMPERATIVE:
        return None
    return t


def _wh_question(sent: Any, first: str) -> tuple[str, str, str]:
    root = sent.root
    if first in ("why", "who", "whom", "whose", "when", "where"):
        return first, "knowledge", "question"
    v = _descend(root)
    lem = _lemma(v)
    subj = _chain_subject(root, v)
    if first == "how":
        # "How would you handle ...", "How can I save money", "How to play chess" are tasks;
        # "How does DNA replication work?" asks for knowledge
        if v.pos_ in ("VERB", "AUX") and lem != "be" and (_is_person(subj) or (subj is None and _has_to(v))):
            return lem, _object(v) or NONE, "question"
        return "how", "knowledge", "question"
    # what / which
    if lem == "be":
        nouns = [c for c in v.children if c.dep_ in ("attr", "nsubj", "nsubjpass") and c.lower_ not in _WH]
        if _modal(v):  # "What would be the best way to ...", "What will be the output ..."
            for c in nouns:
                n = _nominal(c)
                if n:
                    return "be", n, "question"
        for c in nouns:  # "What is the formula to calculate the volume of a sphere?"
            for a in c.children:
                if a.dep_ in ("acl", "relcl") and a.pos_ == "VERB" and _has_to(a):
                    return _lemma(a), _object(a) or NONE, "question"
        if re.search(r"\d\s*[-+*/^=]\s*\d|\d\s*[-+*/^]\s*[a-z]\b", sent.doc.text):
            return first, "math", "question"
        return first, "knowledge", "question"
    if lem == "think":  # "What do you think would be the best way to ..."
        for c in v.children:
            if c.dep_ == "ccomp" and _lemma(c) == "be" and _modal(c):
                for a in c.children:
                    if a.dep_ in ("attr", "nsubj") and a.lower_ not in _WH:
                        n = _nominal(a)
                        if n:
                            return "be", n, "question"
    if v.pos_ in ("VERB", "AUX"):
        n = _object(v)
        if n is None:  # "What does it mean when something is ...", "What would you do if your friend ..."
            for c in v.children:
                if c.dep_ in ("advcl", "ccomp") and lem == "do":
                    inner = _descend(c)  # "What would you do if you were asked to create a program?"
                    if inner is not c:
                        return _lemma(inner), _object(inner) or NONE, "question"
                if c.dep_ in ("advcl", "ccomp"):
                    s = _subject(c)
                    if s is not None and s.dep_ != "expl" and s.lower_ not in _WH | {"you", "i", "we"}:
                        n = _nominal(s)
                    if n is None:
                        n = _object(c, allow_clause=False)
                    if n:
                        break
        return lem, n or NONE, "question"
    return first, "knowledge", "question"


def _main_verb(toks: list[Any], root: Any, first: str) -> Any:
    """The verb a non-wh sentence is about, after following control and reporting verbs."""
    v = root
    # an imperative's leading verb carries the task even when the parser hung it elsewhere
    # ("Describe the stages a bill goes through": root "goes")
    t0 = toks[0]
    if (
        t0.i != root.i
        and t0.pos_ == "VERB"
        and t0.tag_ == "VB"
        and t0.dep_ not in ("aux", "auxpass")
        and _subject(t0) is None
        and first not in _NOT_IMPERATIVE
    ):
        v = t0
    # "Is there a way to determine ...?" / "Is there any way you can use ..."
    if _lemma(v) == "be" and any(c.dep_ == "expl" for c in v.children):
        for c in v.children:
            if c.dep_ in ("attr", "nsubj"):
                for a in c.children:
                    if a.dep_ in ("acl", "relcl") and a.pos_ == "VERB":
                        v = a
                        break
    return _descend(v)


def _label_span(sent: Any) -> tuple[str, str, str]:
    """Label one sentence. Returns ``(verb, noun, kind)``.

    kind is ``imperative`` (a command), ``question``, ``declarative`` ("I want to ..."), ``context``
    (role-play or setting: "Imagine you are a chef.", "You are given a list."), ``context-task`` (a
    context sentence that still names the task: "Suppose you have to convince someone ...") or ``other``.
    """
    toks = [t for t in sent if not t.is_punct and not t.is_space]
    # skip a leading interjection ("Please", "Hey")
    while toks and (toks[0].pos_ == "INTJ" or toks[0].lower_ in ("please", "kindly")):
        toks = toks[1:]
    if not toks:
        return NONE, NONE, "empty"
    first = toks[0].lower_
    root = sent.root
    if first in _WH:
        return _wh_question(sent, first)

    is_q = sent.text.rstrip().endswith("?")
    v = _main_verb(toks, root, first)
    lem = _lemma(v)
    subj = _chain_subject(root, v)
    if lem in _CONTEXT_VERBS or lem in _SUPPOSE_VERBS:
        # "Imagine you are a chef. Create a recipe ..." puts the task in the next sentence (the
        # label below is only the fallback); "Suppose you have to convince someone" and
        # "Suppose we have a list of ..." (IEB: suppose|list) name it in this one
        kind = "context-task" if lem in _SUPPOSE_VERBS else "context"
        for c in v.children:
            if c.dep_ == "ccomp":
                inner = _descend(c)
                if (
                    _lemma(inner) not in ("be", "have", "give", "get")
                    and inner.pos_ == "VERB"
                    and inner.tag_ != "VBG"
                ):
                    return _lemma(inner), _object(inner) or NONE, kind
        return lem, _object(v) or NONE, kind
    if lem == "be" and v is root and first in ("is", "are", "was", "were", "am") and is_q:
        # "Is a tomato a fruit or a vegetable?" / "Is the following sentence a question?" (IEB: yes-no)
        deictic = any(t.lower_ in _DEICTIC for t in toks)
        return "yes-no", "task" if deictic else "knowledge", "question"
    setting = lem in ("have", "give", "get") and (subj is None or _is_person(subj)) and first not in _AUX_FIRST
    if lem == "be" or setting:  # "You are a teacher.", "You are given a list of numbers."
        return lem, _object(v) or NONE, "context"
    if lem == "tell" and not any(c.dep_ in ("dobj", "ccomp") and c.lower_ not in ("me", "us") for c in v.children):
        for c in v.children:  # "Tell me about Roger Federer" asks for knowledge (IEB: tell|knowledge)
            if c.dep_ == "prep" and c.lower_ == "about":
                pobj = next((p for p in c.children if p.dep_ == "pobj"), None)
                if pobj is not None and pobj.pos_ == "PROPN":
                    return "tell", "knowledge", "imperative"
    if v.pos_ not in ("VERB", "AUX") and not (v.dep_ == "conj" and v.pos_ == "ADJ"):
        vt = _verb_token(toks)
        if vt is not None:
            head = vt.head if vt.dep_ != "ROOT" else None
            noun = _lemma(head) if head is not None and head.pos_ in ("NOUN", "PROPN") else None
            return _lemma(vt), noun or _object(vt) or NONE, "imperative"
        if (
            v.pos_ in ("NOUN", "PROPN")
            and not any(t.pos_ == "VERB" for t in toks)
            and re.fullmatch(r"[A-Za-z][A-Za-z\-']{1,29}", v.text)
            and (_lemma(v) in _NOUN_INDEX or (v.pos_ == "PROPN" and v.text[:1].isupper()))
            and sum(1 for t in toks if t.is_alpha) >= 2
        ):
            # a bare noun phrase ("Best airline in the world") is a knowledge query in IEB
            return "noun", "knowledge", "nounphrase"
        return NONE, NONE, "other"
    if first in _AUX_FIRST or is_q:
        return lem, _object(v) or NONE, "question"
    if subj is None:
        return lem, _object(v) or NONE, "imperative"
    if _is_person(subj) or subj.lower_ == "it":
        return lem, _object(v) or NONE, "declarative"
    return lem, _object(v) or NONE, "other"


def _starts_upper(sent: Any) -> bool:
    m = re.search(r"[A-Za-z]", sent.text)
    return bool(m) and m.group(0).isupper()


def _label_doc(doc: Any) -> tuple[str, str]:
    results = []
    for k, sent in enumerate(doc.sents):
        if k >= 4:
            break
        r = _label_span(sent)
        if r[2] == "empty":
            continue
        results.append((r, sent))
    if not results:
        return NONE, NONE
    (verb, noun, kind), _ = results[0]
    if kind in ("context", "other", "nounphrase") or verb == NONE:
        # the task is in a later sentence ("Imagine you are a chef. Create a recipe ..."); a sentence
        # that starts in lowercase continues the first one (IEB's parser did not split there)
        for (v2, n2, k2), sent in results[1:]:
            if k2 in ("imperative", "question", "context-task") and v2 != NONE and (
                _starts_upper(sent) or verb == NONE or kind == "nounphrase"
            ):
                return v2, n2
    return verb, noun


def _clean(part: str) -> str:
    """A label part is one lowercase word (letters, ``-``, ``'``); anything else becomes ``none``."""
    part = part.strip().lower()
    if not re.fullmatch(r"[a-z][a-z'\-]{0,39}", part):
        return NONE
    return part


# --------------------------------------------------------------------------------------------------
# entry points


def normalize_space(text: str) -> str:
    """Whitespace collapsed to single spaces, stripped."""
    return _WS.sub(" ", text).strip()


def prepare(text: str) -> str:
    """The string to parse for ``text``: normalised by :func:`_prepare` and, when it starts with a word that
    can be a verb, prefixed with ``Please`` (helps the tagger see an imperative)."""
    p = _prepare(text)
    imp = _imperative_form(p)
    return imp if imp is not None else p


def is_parsable(prepared: str) -> bool:
    """Whether a prepared string holds a letter (only those are parsed; the rest get FALLBACK_LABEL)."""
    return bool(prepared) and re.search(r"[A-Za-z]", prepared) is not None


def label_doc(doc: Any) -> str:
    """``"verb|noun"`` of a parsed instruction; :data:`FALLBACK_LABEL` when no verb is found."""
    try:
        verb, noun = _label_doc(doc)
    except Exception:  # pragma: no cover - rules must never crash on odd input
        verb, noun = NONE, NONE
    verb, noun = _clean(verb), _clean(noun)
    return FALLBACK_LABEL if verb == NONE else f"{verb}|{noun}"
