from voicebot.config import load_settings
from voicebot.knowledge import load_for_settings
from voicebot.knowledge.vocabulary import domain_words


def test_domain_words_come_from_article_titles_without_filler():
    words = domain_words(load_for_settings(load_settings()))
    lowered = [w.lower() for w in words]
    assert "bopælsattest" in lowered and "sundhedskort" in lowered and "pladsanvisning" in lowered
    assert "eller" not in lowered and "og" not in lowered
    assert len(lowered) == len(set(lowered))
