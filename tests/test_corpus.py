"""Reading, cleaning and splitting the seed articles and other messy files."""

from __future__ import annotations

import pytest

from conftest import SEEDS
from ragqa.corpus import build_articles, decode_bytes, doc_bases, doc_slug, load_corpus
from ragqa.errors import CorpusError, UsageError


@pytest.fixture(scope="module")
def seeds():
    corpus = load_corpus([SEEDS])
    return {a.doc_id: a for a in corpus.articles}, corpus


def story(article) -> str:
    return "\n".join(article.paragraphs)


def test_seed_counts(seeds):
    by_id, corpus = seeds
    assert len(corpus.files) == 5
    assert sorted(by_id) == [
        "000-5cafd9bf", "001-760573c8", "002-bb1140d7", "003-8169c992",
        "004-e00e9c22-a1", "004-e00e9c22-a2", "004-e00e9c22-a3", "004-e00e9c22-a4", "004-e00e9c22-a5",
    ]
    assert corpus.ignored == 1  # gold_qa.jsonl is not an article


def test_every_story_line_is_kept(seeds):
    """Each seed line that is story text appears, whole, in the cleaned articles."""
    by_id, _ = seeds
    cleaned = "\n".join(story(a) for a in by_id.values())
    chrome_markers = ("사진=", "캡처", "기자", "@", "Copyright", "메뉴", "검색", "Today", "회원", "•",
                      "맨위로", "img", "입력", "수정", "풀기", "응원하기", "전문읽기", "혜택", "뉴스플리")
    titles = {a.title for a in by_id.values()}
    for path in sorted(SEEDS.glob("*.txt")):
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line.startswith("더지엠뉴스"):
                line = line.split("| ", 1)[1]  # byline prefix of each article in the multi-article file
            if line.startswith("[속보]"):
                continue  # a reworded echo of the headline
            if len(line) < 40 or any(m in line for m in chrome_markers) or line in titles:
                continue
            if path.name.startswith("003") and line.startswith(("휴전 만료", "승려들의", "야자 나무", "폭우로")):
                continue  # the "Today's HOT" link block
            assert line in cleaned, f"{path.name}: lost story line {line[:40]!r}"


def test_deepseek_chrome_removed(seeds):
    """003: photo captions, byline, the Today's HOT block and the membership promo are gone."""
    by_id, _ = seeds
    a = by_id["003-8169c992"]
    text = story(a)
    for chrome in ("딥시크 홈페이지 캡처", "Today`s HOT", "가자지구", "런던에서 벌어진", "경향신문 회원",
                   "퀴즈", "김경민 기자", "img"):
        assert chrome not in text
    assert a.title == "中 AI ‘딥시크’ 쇼크에 엔비디아 17% 폭락, 시총 850조 증발···미국 AI패권 흔들리나"
    assert a.paragraphs[-1].endswith("“딥시크는 미국에 경종을 울린다”라고 말했다.")
    assert "엔비디아·브로드컴 16% 넘게 급락" in text  # the deck lines are story
    assert "딥시크 홈페이지 캡처." in a.dropped and "Today`s HOT" in a.dropped


def test_alibaba_chrome_removed(seeds):
    by_id, _ = seeds
    a = by_id["001-760573c8"]
    text = story(a)
    for chrome in ("메뉴", "검색버튼", "/사진=", "이미지 확대보기", "tiger8280", "맨위로 스크롤", "[속보]"):
        assert chrome not in text
    assert a.title.startswith("[속보] 엔비디아 AI 반도체")
    assert a.paragraphs[0] == "엔비디아 AI 반도체 독점이 무너지고 있다. 뉴욕증시에서는 알리바바 돌풍이 주목을 끌고 있다."


def test_copyright_and_date_labels_removed(seeds):
    by_id, _ = seeds
    assert "무단 전재" not in story(by_id["000-5cafd9bf"])
    assert by_id["000-5cafd9bf"].paragraphs[-1].endswith("인간 수준의 인공지능 개발을 목표로 하겠다고 밝힌 바 있다.")
    assert by_id["002-bb1140d7"].dropped == ["입력", "수정"]
    assert by_id["000-5cafd9bf"].title is None  # no headline in that file


def test_subheadings_join_their_paragraph(seeds):
    by_id, _ = seeds
    paras = by_id["000-5cafd9bf"].paragraphs
    joined = [p for p in paras if p.startswith("◇美, H200 수출 깜짝 허용")]
    assert joined and "16일 업계에 따르면 미국 정부는" in joined[0]


def test_multi_article_file_is_split(seeds):
    by_id, _ = seeds
    starts = {
        "004-e00e9c22-a1": "중국 중부 지역 산업 지도가",
        "004-e00e9c22-a2": "엔비디아가 핵심 클라우드 파트너인 코어위브와의",
        "004-e00e9c22-a3": "중국 자본시장에서 과학혁신판이",
        "004-e00e9c22-a4": "중국 주요 대학들이 반도체 분야에서",
        "004-e00e9c22-a5": "미국 반도체 기업 AMD가",
    }
    for doc_id, start in starts.items():
        text = story(by_id[doc_id])
        assert text.startswith(start)
        assert "더지엠뉴스" not in text and "기자 |" not in text
    assert "코어위브" not in story(by_id["004-e00e9c22-a1"])


def test_yonhap_style_dateline_splits_too():
    text = (
        "(서울=연합뉴스) 김철수 기자 = 첫 번째 기사의 본문입니다. 충분히 긴 문장으로 이루어져 있습니다.\n"
        "(워싱턴=연합뉴스) 이영희 특파원 = 두 번째 기사의 본문입니다. 이 역시 긴 문장으로 되어 있습니다.\n"
    )
    arts = build_articles(text, "wire")
    assert [a.doc_id for a in arts] == ["wire-a1", "wire-a2"]
    assert arts[1].paragraphs[0].startswith("두 번째 기사")


def test_doc_slug():
    assert doc_slug("000_5cafd9bf1db64a43.txt") == "000-5cafd9bf"
    assert doc_slug("001_760573c8890242e6.txt") == "001-760573c8"  # a hash-like word keeps 8 characters
    assert doc_slug("My Article (final).md") == "my-article-final"
    assert doc_slug("harbor-bridge-collapse.txt") == "harbor-bridge-collapse"  # whole words, never cut mid-word
    assert doc_slug("2024-01-16 Nvidia H200 export news roundup.md") == "2024-01-16-nvidia-h200"
    assert doc_slug("대한민국 반도체 수출 통제 완화 발표 전문 기사.txt") == "대한민국-반도체-수출-통제-완화-발표-전문"
    assert doc_slug("z" * 40 + "-news.txt") == "z" * 24  # one word over the budget is cut
    assert doc_slug("기사 모음 1.txt") == "기사-모음-1"
    assert doc_slug("!!!.txt").startswith("doc-")


def test_same_name_in_two_folders_gets_distinct_ids(tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "news.txt").write_text(f"{sub} 폴더의 기사입니다. 내용이 충분히 길어야 합니다.", encoding="utf-8")
    ids = [a.doc_id for a in load_corpus([tmp_path]).articles]
    assert len(set(ids)) == 2 and all(i.startswith("news-") for i in ids)


def test_doc_bases_hash_only_shared_or_taken_slugs():
    files = [("a/news.txt", "news.txt"), ("b/news.txt", "news.txt"), ("c/h200.txt", "h200.txt"), ("d/chips.txt", "chips.txt")]
    bases = doc_bases(files, previous={"d/chips.txt": "h200"})  # an earlier build gave chips.txt the base "h200"
    assert bases["d/chips.txt"] == "h200"  # kept: IDs stay stable
    assert bases["c/h200.txt"].startswith("h200-")  # its slug is taken
    assert bases["a/news.txt"].startswith("news-") and bases["b/news.txt"].startswith("news-")  # shared
    assert len(set(bases.values())) == 4
    assert doc_bases([("x/only.txt", "only.txt")]) == {"x/only.txt": "only"}


KOREAN = "알리바바가 새 AI 칩을 개발했다. 엔비디아 주가가 내렸다."


@pytest.mark.parametrize("encoding", ["cp949", "euc-kr", "utf-16", "utf-8-sig"])
def test_legacy_encodings_decode(encoding):
    text, warning = decode_bytes(KOREAN.encode(encoding))
    assert text == KOREAN and warning is None


def test_utf16_without_bom():
    text, _ = decode_bytes(KOREAN.encode("utf-16-le"))
    assert text == KOREAN


def test_a_few_invalid_utf8_bytes_are_replaced_with_a_warning():
    data = (KOREAN * 20).encode() + b"\xff\xfe\xfa" + (KOREAN * 20).encode()
    text, warning = decode_bytes(data)
    assert KOREAN in text and "replaced" in warning


def test_binary_is_refused():
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4
    with pytest.raises(CorpusError, match="binary"):
        decode_bytes(png)


def test_unreadable_file_in_folder_is_skipped(tmp_path):
    (tmp_path / "good.txt").write_text(KOREAN, encoding="utf-8")
    (tmp_path / "bad.txt").write_bytes(b"\x00\x01\x02binary\x00" * 100)
    (tmp_path / "photo.png").write_bytes(b"\x89PNG")
    corpus = load_corpus([tmp_path])
    assert [a.source for a in corpus.articles] == ["good.txt"]
    assert corpus.skipped[0][0].endswith("bad.txt") and "binary" in corpus.skipped[0][1]
    assert corpus.ignored == 1


def test_unreadable_file_named_explicitly_is_an_error(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\x00\x01\x02binary\x00" * 100)
    with pytest.raises(CorpusError, match="bad.txt: binary"):
        load_corpus([bad])


def test_empty_folder_and_missing_path(tmp_path):
    with pytest.raises(CorpusError, match="no readable articles"):
        load_corpus([tmp_path])
    with pytest.raises(UsageError, match="path not found"):
        load_corpus([tmp_path / "nope"])


def test_markdown_paragraphs_are_blocks(tmp_path):
    md = tmp_path / "note.md"
    md.write_text(
        "# 엔비디아 실적 발표\n\n엔비디아는 2분기 실적을 발표했다.\n매출은 전년 대비 크게 늘었다.\n\n"
        "[링크](http://example.com)를 참고하라는 안내가 있었다. ![사진](x.png)\n",
        encoding="utf-8",
    )
    (a,) = load_corpus([md]).articles
    assert a.title == "엔비디아 실적 발표"
    assert a.paragraphs[0] == "엔비디아는 2분기 실적을 발표했다. 매출은 전년 대비 크게 늘었다."
    assert a.paragraphs[1] == "링크를 참고하라는 안내가 있었다."
