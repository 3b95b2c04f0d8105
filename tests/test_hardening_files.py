"""Messy folders: every odd file ends in a clear skip reason or a clean article, never a crash or data loss."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import make_settings
from ragqa import store
from ragqa.build import build_index
from ragqa.corpus import load_corpus
from ragqa.errors import CorpusError
from ragqa.retrieve import Retriever

STORY = "엔비디아가 새 AI 칩을 발표했다. 이 칩은 내년에 중국 시장에 출시될 예정이라고 회사는 밝혔다.\n"


def skipped(corpus) -> dict[str, str]:
    return {Path(p).name: reason for p, reason in corpus.skipped}


def test_a_folder_of_odd_files(tmp_path):
    d = tmp_path / "기사 모음 (odd files)"  # spaces, Hangul and brackets in the folder path too
    d.mkdir()
    (d / "good.txt").write_text(STORY, encoding="utf-8")
    (d / "empty.txt").write_bytes(b"")
    (d / "blank.md").write_text("\n\n   \n", encoding="utf-8")
    (d / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    (d / "paper.pdf").write_bytes(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n" + bytes(200))
    (d / "renamed.txt").write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 4)  # a PDF with a .txt name
    (d / "legacy.txt").write_bytes(STORY.replace("엔비디아", "삼성전자").encode("cp949"))
    (d / "wide.txt").write_bytes(STORY.replace("엔비디아", "인텔").encode("utf-16"))
    (d / "broken.txt").write_bytes((STORY * 30).encode() + b"\xff\xfe\xfd" + (STORY * 30).encode())
    (d / "chrome.txt").write_text("메뉴 로고 검색\n검색버튼\n김철수 기자\nCopyright ⓒ 무단 전재 및 재배포 금지\n맨위로 스크롤\n", encoding="utf-8")
    (d / "공백 있는 이름 기사.txt").write_text(STORY.replace("엔비디아", "화웨이"), encoding="utf-8")
    corpus = load_corpus([d])
    sources = sorted(f.source for f in corpus.files)
    assert sources == ["broken.txt", "good.txt", "legacy.txt", "wide.txt", "공백 있는 이름 기사.txt"]
    why = skipped(corpus)
    assert "binary" in why["renamed.txt"]
    assert why["empty.txt"] == why["blank.md"] == why["chrome.txt"] == "no article text after removing boilerplate"
    assert corpus.ignored == 2  # the .png and the .pdf are not article files
    assert any("broken.txt" in w and "replaced" in w for w in corpus.warnings)
    texts = {f.source: "\n".join(p for a in f.articles for p in a.paragraphs) for f in corpus.files}
    assert "삼성전자가 새 AI 칩을" in texts["legacy.txt"] and "인텔가 새 AI 칩을" in texts["wide.txt"]
    assert texts["broken.txt"].count("엔비디아가 새 AI 칩을") == 60  # nothing around the bad bytes lost
    ids = [a.doc_id for a in corpus.articles]
    assert "공백-있는-이름-기사" in ids


def test_symlink_loop_and_unreadable_file(tmp_path, monkeypatch):
    d = tmp_path / "links"
    d.mkdir()
    (d / "good.txt").write_text(STORY, encoding="utf-8")
    (d / "loop").symlink_to(d, target_is_directory=True)  # a directory loop: not followed
    (d / "self.txt").symlink_to(d / "self.txt")  # a file link that points at itself
    (d / "secret.txt").write_text(STORY, encoding="utf-8")
    real_read = Path.read_bytes

    def read_bytes(self):
        if self.name == "secret.txt":  # tests run as root, where chmod 000 does not stop reading
            raise PermissionError(13, "Permission denied")
        return real_read(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    corpus = load_corpus([d])
    assert [f.source for f in corpus.files] == ["good.txt"]
    why = skipped(corpus)
    assert why["secret.txt"] == "permission denied"
    assert "symbolic links" in why["self.txt"].lower() or "loop" in why["self.txt"].lower()


def test_ten_thousand_tiny_files(tmp_path):
    d = tmp_path / "many"
    for i in range(10_000):
        sub = d / f"{i // 1000:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"{i:05d}.txt").write_text(f"기사 {i}번: 엔비디아 칩 수출 소식이 전해졌다. 숫자 {i}가 들어 있다.", encoding="utf-8")
    settings = make_settings(tmp_path)
    report = build_index([d], settings)
    assert report.files == 10_000 and report.chunks == 10_000
    hit = Retriever(store.load(settings.index_dir), settings).search("숫자 4321", 1, "lexical").hits[0]
    assert hit.doc_id == "04321" and "4321" in hit.text


@pytest.mark.slow
def test_fifty_megabyte_file(tmp_path):
    big = tmp_path / "big.txt"
    line = "엔비디아의 인공지능 칩 수출을 둘러싼 논의가 이어지고 있다. 미국 정부는 지난 8일 결정을 내렸다.\n"
    with open(big, "w", encoding="utf-8") as f:
        while f.tell() < 50_000_000:
            f.write(line * 1000)
    settings = make_settings(tmp_path)
    report = build_index([big], settings)
    assert report.chunks > 100_000
    assert Retriever(store.load(settings.index_dir), settings).search("결정", 3, "lexical").hits


def test_a_megabyte_paragraph_without_line_breaks(tmp_path):
    """A scraped page with no line breaks at all: split into bounded chunks, nothing lost."""
    text = ("엔비디아가 칩을 발표했다 " * 80_000).strip()  # ~1 MB, no sentence-final period, one line
    (tmp_path / "wall.txt").write_text(text, encoding="utf-8")
    (a,) = load_corpus([tmp_path]).articles
    from ragqa.chunking import approx_tokens, split_paragraph

    pieces = split_paragraph(a.paragraphs[0], 220)
    assert all(approx_tokens(p) <= 220 for p in pieces)
    assert "".join(pieces).replace(" ", "") == a.paragraphs[0].replace(" ", "")


def test_control_characters_never_reach_the_articles(tmp_path):
    (tmp_path / "ansi.txt").write_text("엔비디아가 칩을 발표했다.\x1b[2J\x1b[31m 빨간 글씨\x07 로 화면을 지우려는 문장이다.", encoding="utf-8")
    (a,) = load_corpus([tmp_path]).articles
    assert "\x1b" not in a.paragraphs[0] and "\x07" not in a.paragraphs[0]
    assert "빨간 글씨" in a.paragraphs[0]


def test_explicit_unreadable_file_fails_clearly(tmp_path):
    loop = tmp_path / "loop.txt"
    loop.symlink_to(loop)
    with pytest.raises(CorpusError, match="loop.txt: a broken or looping symbolic link"):
        load_corpus([loop])


def test_html_page_is_extracted(tmp_path):
    (tmp_path / "page.html").write_text(
        "<html><body><nav>메뉴 로그인</nav><article><h1>엔비디아 H200 수출</h1><p>미국 정부는 지난 8일 엔비디아 H200의 "
        "중국 수출을 허용했다. 업계는 화웨이가 비슷한 칩을 개발했기 때문이라고 본다.</p><p>의회에서는 반발의 목소리가 "
        "나오고 있다. <script>alert('x')</script>여야 모두 우려를 표했다.</p></article></body></html>",
        encoding="utf-8",
    )
    (a,) = load_corpus([tmp_path]).articles
    text = "\n".join(a.paragraphs)
    assert "화웨이가 비슷한 칩을" in text and "alert" not in text and "메뉴" not in text
    assert os.fspath(a.source) == "page.html"


def test_utf16_with_a_broken_surrogate_keeps_its_text(tmp_path):
    bad = b"\xff\xfe" + STORY.encode("utf-16-le") * 20 + b"\x00\xd8" + STORY.encode("utf-16-le")  # a lone surrogate
    (tmp_path / "wide.txt").write_bytes(bad)
    corpus = load_corpus([tmp_path])
    text = "\n".join(p for a in corpus.articles for p in a.paragraphs)
    assert text.count("엔비디아가 새 AI 칩을") == 21 and not any("\ud800" <= c <= "\udfff" for c in text)
    assert any("wide.txt" in w and "UTF-16" in w and "replaced" in w for w in corpus.warnings)
