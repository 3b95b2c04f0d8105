"""Korean-aware tokens and BM25, checked against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ragqa.lexical import BM25, appears, concepts, is_korean, split_sentences, tokenize, top_k


def test_particles_and_endings_are_dropped():
    assert tokenize("알리바바는") == tokenize("알리바바가") == ["알리바바"]
    assert tokenize("허용했다") == tokenize("허용하겠다고") == ["허용"]
    assert tokenize("미국이 H200 수출을 허용한 이유는?") == ["미국", "h200", "수출", "허용", "이유"]


def test_latin_numbers_and_hanja():
    assert tokenize("A100 and the 3,142.93 points") == ["a100", "3142.93", "point"]  # stemmed
    assert tokenize("中 테크업계, 美 추월") == ["중국", "테크", "업계", "테크업계", "미국", "추월"]


def test_joined_nouns_match_however_the_analyzer_splits_a_name():
    article = tokenize("엔비디아의 AI경쟁자로 떠오른 브로드컴도 17.4% 폭락했다.")
    question = tokenize("그럼 브로드컴은 얼마나 떨어졌어?")
    assert "브로드컴" in article and "브로드컴" in question
    # An unknown name may be split in one context and not in another: touching nouns are also indexed
    # joined, so the split form still meets the whole one.
    assert tokenize("테크업계") == ["테크", "업계", "테크업계"]
    assert concepts(question) == ["브로드컴", "떨어지"]
    assert appears("브로드", {"브로드컴"}, "브로드컴도 폭락") and not appears("컴", {"브로드컴"}, "브로드컴도")
    assert tokenize("") == [] and tokenize("?!…") == []


def test_sentences():
    text = '그는 "알리바바가 개발했다. 정말이다"라고 말했다. H200은 최신 칩이다.'
    assert split_sentences(text) == ['그는 "알리바바가 개발했다. 정말이다"라고 말했다.', "H200은 최신 칩이다."]
    # closing quotes stay with their sentence; decimals and a line's headline do not end one elsewhere
    text = "“이건 아니다.” 그가 말했다. 정말? 주가는 3.5% 올랐다!\n제목 줄\n다음 문단이다."
    assert split_sentences(text) == ["“이건 아니다.”", "그가 말했다.", "정말?", "주가는 3.5% 올랐다!", "제목 줄", "다음 문단이다."]
    # a quote or bracket that never closes does not swallow the sentences after it
    assert split_sentences('그는 "개발했다. 정말이다. (참고: 없음. 끝.') == ['그는 "개발했다.', "정말이다.", "(참고: 없음.", "끝."]


def test_dictionary_compounds_stay_whole_and_question_endings_are_not_words():
    assert tokenize("반도체 창업자") == ["반도체", "창업자"]  # not 반 + 도체, 창업 + 자
    assert tokenize("알리바바는 새 AI 칩을 어디서 제조하나?") == ["알리바바", "ai", "칩", "제조"]  # 하나: not "one"
    assert tokenize("하나의 칩") == ["하나", "칩"]


def test_analysis_survives_a_nul_and_threads():
    from concurrent.futures import ThreadPoolExecutor

    assert tokenize("엔비디아\0 화웨이 칩") == tokenize("엔비디아  화웨이 칩")  # MeCab reads C strings
    texts = [f"알리바바가 {i}번째 AI 칩을 개발했다고 밝혔다." for i in range(200)]
    with ThreadPoolExecutor(4) as pool:  # one tagger per thread: a MeCab tagger is not thread-safe
        assert list(pool.map(tokenize, texts)) == [tokenize(t) for t in texts]


def test_a_morpheme_line_with_fewer_features_is_one_morpheme_of_its_tag(monkeypatch):
    from ragqa import lexical

    class Tagger:  # as a user dictionary's short entries would make MeCab write
        def parse(self, text):
            return "알리\tNNP,*,F\n바바는\tNNG+JX,*,T,바바는,Inflect,NNG,JX,바바/NNG/*+는/JX/*\nEOS\n"

    monkeypatch.setattr(lexical._local, "tagger", Tagger(), raising=False)
    morphs = [(m.form, m.tag, m.start, m.len) for m in lexical.morphemes("알리바바는")]
    assert morphs == [("알리", "NNP", 0, 2), ("바바", "NNG", 2, 3), ("는", "JX", 2, 3)]


def test_is_korean():
    assert is_korean("미국이 H200 수출을 허용한 이유는?")
    assert not is_korean("Why did the US allow H200 exports?")


def build(docs: list[list[str]]) -> BM25:
    vocab = {"": 0}
    ids = [np.array([vocab.setdefault(t, len(vocab)) for t in d], np.int32) for d in docs]
    offsets = np.cumsum([0] + [len(i) for i in ids])
    return BM25.build(np.concatenate(ids), offsets, len(vocab), vocab)


def test_bm25_matches_hand_computed_lucene_scores():
    docs = [["칩", "칩", "엔비디아"], ["칩", "화웨이"], ["알리바바"]]
    bm = build(docs)
    n, avgdl, k1, b = 3, 2.0, BM25.K1, BM25.B

    def expected(doc, term):
        df = sum(term in d for d in docs)
        idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
        tf = doc.count(term)
        return idf * tf / (tf + k1 * (1 - b + b * len(doc) / avgdl))

    scores = bm.scores(["칩"])
    assert scores == pytest.approx([expected(d, "칩") for d in docs], rel=1e-5)
    assert bm.idf("화웨이") == pytest.approx(math.log(1 + (3 - 1 + 0.5) / 1.5))
    assert bm.scores(["없는단어"]).tolist() == [0, 0, 0]
    assert bm.idf("없는단어") == pytest.approx(math.log(1 + 3.5 / 0.5))  # absent: the rarest possible
    assert bm.search(["칩", "화웨이"], 5)[0][0] == 1


def test_bm25_matches_bm25s_on_the_seeds(tmp_path):
    """Oracle: the bm25s library's Lucene BM25 over the same tokens gives the same scores."""
    import bm25s

    from conftest import SEEDS
    from ragqa.chunking import chunk_articles
    from ragqa.corpus import load_corpus

    docs = [tokenize(c.text) for c in chunk_articles(load_corpus([SEEDS]).articles, 220)]
    ours = build(docs)
    oracle = bm25s.BM25(k1=BM25.K1, b=BM25.B, method="lucene")
    oracle.index(docs, show_progress=False)
    for query in (["h200", "수출", "허용"], ["알리바바", "칩", "개발"], ["딥시크", "딥시크", "앱"], ["없는단어"]):
        ids = [oracle.vocab_dict[t] for t in query if t in oracle.vocab_dict]
        expected = oracle.get_scores_from_ids(ids) if ids else np.zeros(len(docs))
        assert ours.scores(query) == pytest.approx(np.asarray(expected), rel=1e-4, abs=1e-6)


def test_bm25_save_and_load(tmp_path):
    bm = build([["칩", "칩", "엔비디아"], ["칩", "화웨이"], []])
    bm.save(tmp_path)
    again = BM25.load(tmp_path, 3, bm.vocab)
    assert again.scores(["칩"]).tolist() == bm.scores(["칩"]).tolist()
    assert again.search(["화웨이"], 5)[0][0] == 1


def test_top_k_orders_and_drops_zero_scores():
    scores = np.array([0.0, 2.0, 5.0, 2.0, 0.0, 1.0], np.float32)
    assert top_k(scores, 3) == [(2, 5.0), (1, 2.0), (3, 2.0)]
    assert top_k(scores, 10) == [(2, 5.0), (1, 2.0), (3, 2.0), (5, 1.0)]
    assert top_k(np.zeros(4, np.float32), 2) == []


@pytest.mark.parametrize("n", [50, 300_000])  # a short array, and one long enough to be read by blocks
def test_top_k_equals_a_full_sort_and_breaks_ties_at_the_cut_by_row(n):
    rng = np.random.default_rng(n)
    scores = np.zeros(n, np.float32)
    hit = rng.choice(n, n // 3, replace=False)
    scores[hit] = rng.integers(1, 40, len(hit)).astype(np.float32) / 4  # many ties, also at the k-th place
    for k in (1, 7, 50, n):
        order = sorted(np.flatnonzero(scores > 0).tolist(), key=lambda r: (-scores[r], r))[:k]
        assert top_k(scores, k) == [(r, float(scores[r])) for r in order]


def test_one_analysis_gives_sentences_and_their_tokens():
    from ragqa.lexical import korean_sentences, sentence_spans, tokenize, tokens_between

    texts = [
        "미국 정부는 H200의 수출을 허용했다. 그러나 의회는 반대했다.",
        '◇"中, 엔비디아 칩 접근 제한…"\n\n화웨이는 자체 칩을 만든다. 알리바바도 그렇다.\n',
        "삼성전자가 3나노 공정의 수율을 끌어올렸다!",
    ]
    analysed = [korean_sentences(t) for t in texts]
    for text, (spans, morphs) in zip(texts, analysed):
        assert spans == sentence_spans(text)
        assert [tokens_between(morphs, a, b) for a, b in spans] == [tokenize(text[a:b]) for a, b in spans]
    assert len(analysed[1][0]) == 3  # the headline line, then two sentences


@pytest.mark.parametrize("lengths", [[], [10] * 600, [20_000, 20_000, 5, 40_000, 1], [1] * 255 + [31_999, 2]])
def test_batches_cover_the_texts_in_order_within_both_bounds(lengths):
    from ragqa.lexical import BATCH, BATCH_CHARS, batches

    found = list(batches(lengths))
    assert [i for a, b in found for i in range(a, b)] == list(range(len(lengths)))
    for a, b in found:
        assert 0 < b - a <= BATCH
        assert sum(lengths[a:b]) <= BATCH_CHARS or b - a == 1  # a longer text goes alone
    # and batches are as full as the bounds allow: the next text would not have fitted
    for (a, b), _ in zip(found, found[1:]):
        assert b - a == BATCH or sum(lengths[a : b + 1]) > BATCH_CHARS
