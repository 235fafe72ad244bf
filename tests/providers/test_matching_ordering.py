"""Pure logic: fuzzy matching, Camelot keys, artist spread, dedupe."""

from echotune_mcp.providers.base import Track
from echotune_mcp.providers.matching import normalise, score
from echotune_mcp.providers.ordering import artist_spread, camelot, dedupe


def t(id_, title, artist, isrc=None, ms=200_000):
    return Track(provider="x", id=id_, title=title, artists=[artist], isrc=isrc, duration_ms=ms)


def test_normalise_drops_version_noise():
    assert normalise("Wonderwall - Remastered 2014") == "wonderwall"
    assert normalise("Señorita (feat. Someone)") == "senorita"


def test_score_isrc_certain_fuzzy_bounded():
    assert score(t("1", "A", "B", "US1"), t("2", "Other", "C", "us1")).confidence == 1.0
    near = score(t("1", "Hey Jude", "The Beatles"), t("2", "Hey Jude - Remastered 2015", "The Beatles", ms=201_000))
    assert 0.9 < near.confidence <= 0.99 and near.method == "fuzzy"
    assert score(t("1", "Hey Jude", "The Beatles"), t("2", "Yesterday", "Frank Sinatra", ms=150_000)).confidence < 0.5


def test_camelot():
    assert camelot("C major") == (8, "B") and camelot("Am") == (8, "A") and camelot("F#m") == (11, "A")
    assert camelot("8a") == (8, "A") and camelot("nonsense") is None


def test_artist_spread_and_dedupe():
    tracks = [t("1", "a", "X"), t("2", "b", "X"), t("3", "c", "X"), t("4", "d", "Y"), t("5", "e", "Z")]
    order = [x.artists[0] for x in artist_spread(tracks)]
    assert not any(order[i] == order[i + 1] for i in range(len(order) - 1))
    kept, removed = dedupe([t("1", "a", "X", "I1"), t("2", "a (live)", "X", "I1"), t("1", "a", "X")])
    assert [k.id for k in kept] == ["1"] and len(removed) == 2
