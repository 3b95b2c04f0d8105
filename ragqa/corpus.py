"""Read article files, strip page chrome, split multi-article files into Articles."""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .errors import CorpusError, UsageError
from .schema import Article

TEXT_SUFFIXES = {".txt", ".md", ".markdown"}
HTML_SUFFIXES = {".html", ".htm"}
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES
MAX_FILE_BYTES = 200 * 1024 * 1024


@dataclass
class CorpusFile:
    path: str  # as found: under the root it was given as
    source: str  # display name: path relative to the root it was found under (root name first if several roots)
    sha256: str
    articles: list[Article]
    base: str = ""  # article-ID base of the file
    reused: bool = False  # unchanged since the previous build: not read again, its chunks are reused
    key: str = ""  # the file's identity: its resolved absolute path (one file reached twice is one file)


@dataclass
class Corpus:
    files: list[CorpusFile] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): article files not read
    ignored: int = 0  # files that are not articles (.jsonl, .png, ...)
    warnings: list[str] = field(default_factory=list)

    @property
    def articles(self) -> list[Article]:
        return [a for f in self.files for a in f.articles]


# ---------------------------------------------------------------- discovery


Found = tuple[str, str, str]  # (path as found, source name, key)


def file_key(path: Path) -> str:
    """A file's identity across roots, spellings and symbolic links."""
    return os.path.realpath(path)


def _supported(name: str) -> bool:
    dot = name.rfind(".")
    return dot > 0 and name[dot:].lower() in SUPPORTED_SUFFIXES


def discover(
    paths: list[Path], exclude: list[Path] = ()
) -> tuple[list[Found], list[tuple[str, str]], int]:
    """Supported files under `paths` as (path, source name, key), each file once however many roots reach it;
    (path, reason) for unreadable folders; and the number of files ignored for their type. Folders in
    `exclude` (the index itself) are not entered, nor hidden ones, nor symbolic links to folders (a link loop
    cannot trap the walk); symbolically linked files are read. Folders are walked in name order, a folder's
    files before its subfolders, as os.walk does; one directory listing per folder and one path resolution
    per folder and per linked file (a hundred thousand files are scanned in well under a second)."""
    found: list[Found] = []
    seen: set[str] = set()
    skipped: list[tuple[str, str]] = []
    ignored = 0
    excluded = {os.path.realpath(p) for p in exclude}
    several = len(paths) > 1

    def add(p: str, source: str, key: str) -> None:
        if key not in seen:
            seen.add(key)
            found.append((p, source, key))

    for root in paths:
        if not root.exists():
            if root.is_symlink():
                raise CorpusError(f"{root}: a broken or looping symbolic link")
            raise UsageError(f"path not found: {root} (give a folder or file of .txt/.md/.html articles)")
        if root.is_file():
            if root.suffix.lower() not in SUPPORTED_SUFFIXES:
                raise UsageError(
                    f"unsupported file type: {root} (ragqa reads {', '.join(sorted(SUPPORTED_SUFFIXES))})"
                )
            add(str(root), root.name, file_key(root))
            continue
        prefix = f"{Path(os.path.realpath(root)).name}/" if several else ""
        folders = [(str(root), os.path.realpath(root), prefix)]  # (as walked, resolved, source prefix)
        while folders:
            folder, real, rel = folders.pop()
            try:
                with os.scandir(folder) as it:
                    entries = sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
            except OSError as e:
                skipped.append((e.filename or folder, e.strerror))
                continue
            subfolders = []
            inside = real if real.endswith("/") else real + "/"
            for e in entries:
                try:
                    is_dir = e.is_dir()
                except OSError:
                    is_dir = False
                if is_dir:
                    sub_real = inside + e.name
                    if not e.is_symlink() and sub_real not in excluded:
                        subfolders.append((e.path, sub_real, f"{rel}{e.name}/"))
                elif not _supported(e.name):
                    ignored += 1
                else:
                    key = os.path.realpath(e.path) if e.is_symlink() else inside + e.name
                    add(e.path, rel + e.name, key)
            folders.extend(reversed(subfolders))
    return found, skipped, ignored


# ---------------------------------------------------------------- decoding


def decode_bytes(data: bytes) -> tuple[str, str | None]:
    """Text and an optional warning; raises CorpusError for binary or undecodable data."""
    if data.startswith(b"\xef\xbb\xbf"):
        return _tolerant(data[3:], "utf-8")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return _tolerant(data, "utf-16")
    if b"\x00" in data[:4096]:
        guess = _utf16_without_bom(data)
        if guess is not None:
            return guess, None
        raise CorpusError("binary file, not text")
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        pass
    try:
        text = data.decode("cp949")  # superset of EUC-KR, the usual legacy Korean encoding
        if _plausible_text(text):
            return text, None
    except UnicodeDecodeError:
        pass
    try:
        return _tolerant(data, "utf-8")
    except CorpusError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is not None and _plausible_text(str(best)):
        return str(best), f"decoded as {best.encoding}"
    raise CorpusError("cannot decode: not UTF-8, UTF-16 or CP949/EUC-KR text")


def _tolerant(data: bytes, encoding: str) -> tuple[str, str | None]:
    """Text with a few invalid sequences replaced by U+FFFD (and a warning); more than a few is not this encoding."""
    text = data.decode(encoding, errors="replace")
    bad = text.count("\ufffd") - data.decode(encoding, errors="ignore").count("\ufffd")
    if bad == 0:
        return text, None
    if bad <= max(3, len(text) // 200):
        return text, f"{bad} invalid {encoding.upper()} sequence(s) replaced with �"
    raise CorpusError(f"invalid {encoding.upper()} text")


def _utf16_without_bom(data: bytes) -> str | None:
    # UTF-16 puts its zero bytes (high bytes of ASCII) on one parity only; binary data has them on both.
    sample = data[:4096]
    even, odd = sample[0::2].count(0), sample[1::2].count(0)
    for enc, zeros, other in (("utf-16-le", odd, even), ("utf-16-be", even, odd)):
        if zeros and other * 2 < zeros and len(data) % 2 == 0:
            try:
                text = data.decode(enc)
            except UnicodeDecodeError:
                continue
            if _plausible_text(text):
                return text
    return None


def _plausible_text(text: str) -> bool:
    if not text.strip():
        return True
    control = sum(1 for c in text if unicodedata.category(c) in ("Cc", "Co", "Cn") and c not in "\n\r\t\f")
    return control / len(text) < 0.01


def read_text(path: Path) -> tuple[str, bytes, str | None]:
    """(NFC text, raw bytes, warning) of one file."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise CorpusError(f"file too large ({size // 1_000_000} MB > {MAX_FILE_BYTES // 1_000_000} MB)")
        data = path.read_bytes()
    except PermissionError:
        raise CorpusError("permission denied") from None
    except IsADirectoryError:
        raise CorpusError("is a directory") from None
    except OSError as e:
        raise CorpusError(e.strerror or str(e)) from None
    text, warning = decode_bytes(data)
    if path.suffix.lower() in HTML_SUFFIXES:
        text = html_to_text(text)
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    # Control characters (an ANSI escape sequence could clear a terminal) never reach the index.
    return _CONTROL.sub("", text), data, warning


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")  # and lone surrogates, which no file holds


def html_to_text(html: str) -> str:
    import trafilatura

    text = trafilatura.extract(html, include_comments=False, include_tables=False, favor_precision=True)
    if not text:
        raise CorpusError("no article text found in this HTML page")
    return text


# ---------------------------------------------------------------- cleaning

_CLOSERS = re.escape("\"'”’」』)]")
# A sentence ends in terminal punctuation; a long line ending in "다" is a sentence that lost its period
# (truncated files), while a short one is a headline such as ◇"중국이 더 좋은 칩 만든다".
_TERMINAL = re.compile(rf"[.!?。][{_CLOSERS}]*\s*$")
_DA_END = re.compile(rf"다[{_CLOSERS}]*\s*$")
_HEADING_MARK = re.compile(r"^\s*[◇◆■□▲△▶▷【\[<]")
_CAPTION = re.compile(r"(사진|이미지|그래픽|자료|영상|출처)\s*[=:＝]|이미지\s*확대보기|캡처\.?\s*$|캡쳐\.?\s*$")
# Patterns run over whole lines, which can be megabytes long, are kept linear: a run of spaces is taken whole
# (possessive \s*+, and only from its first space), and e-mail addresses are found from their '@'.
_CAPTION_INLINE = re.compile(r"(?<!\s)\s*+[(\[]\s*+(사진|이미지|그래픽|자료|출처)\s*+[=:＝][^)\]]{0,60}[)\]]")
_EMAIL_DOMAIN = re.compile(r"[\w-]++(?:\.[\w-]++)+")
_EMAIL_LOCAL = re.compile(r"[\w.+-]+")  # matched on the reversed text before an '@'
_COPYRIGHT = re.compile(r"(?i)copyright|ⓒ|©|무단\s*전재|재배포\s*금지|all rights reserved|저작권자")
_BYLINE_ONLY = re.compile(r"^[가-힣]{2,4}\s*(기자|특파원|통신원|연구원|연구소장|논설위원|객원기자|선임기자)(\s*[,·]\s*[가-힣]{2,4}\s*기자)*\s*$")
_DATESTAMP = re.compile(r"^(입력|수정|승인|등록|게재|업데이트|기사입력|최종수정)\s*+[:：]?+\s*+[\d.\-/: ]*+$")
_PROMO = re.compile(
    r"회원(을 위한 서비스|이 되시면|\s*혜택|가입)|구독(하기|신청|하세요)|뉴스레터|앱\s*다운로드|기사\s*응원|"
    r"제보(하기|는)|카카오톡.*(친구|채널)|좋아요|공유하기|댓글"
)
_LINK_BLOCK = re.compile(
    r"(?i)^\s*(today[`'’]?s\s*hot|hot\s*(뉴스|news|이슈)|많이\s*본\s*(기사|뉴스)|관련\s*기사|인기\s*(기사|뉴스)|"
    r"추천\s*(기사|뉴스)|주요\s*뉴스|포토\s*뉴스|실시간\s*(뉴스|인기)|이\s*시각\s*(주요|인기)|핫\s*클릭)\b"
)
_MENU_WORDS = {
    "메뉴", "검색", "검색버튼", "로그인", "로그아웃", "회원가입", "닫기", "공유", "img", "image", "입력", "수정",
    "맨위로", "맨", "위로", "스크롤", "맨위로스크롤", "top", "글자크기", "인쇄", "프린트", "이전", "다음", "목록",
    "전체메뉴", "홈", "home", "구독", "로고", "기사공유", "페이스북", "트위터", "카카오톡", "url복사", "가", "스크랩",
}
_BULLET = re.compile(r"^\s*[•·▶▷■□◆○●\-*]\s*")
# "<outlet> <name> 기자 | text" or "(서울=연합뉴스) <name> 기자 = text": the start of an article.
_ARTICLE_START = re.compile(
    r"^(?:(?P<outlet>[^\s|]{2,20}(?:\s[^\s|]{2,20})?)\s+(?P<name>[가-힣]{2,4})\s*(?:기자|특파원)\s*[|ㅣ│]\s*"
    r"|\((?P<dateline>[^()=]{1,15}=[^()]{1,15})\)\s*(?P<name2>[가-힣]{2,4})\s*(?:기자|특파원)\s*=\s*)"
)
_HANJA_HEADLINE = re.compile(r"^[中美日韓北英獨佛露與野]\s")


def is_sentence(line: str) -> bool:
    if _HEADING_MARK.match(line) and len(line) < 150:
        return False
    return bool(_TERMINAL.search(line)) or (len(line) >= 60 and bool(_DA_END.search(line)))


def _email_spans(text: str):
    r"""(start, end) of each e-mail address, exactly as `re.finditer(r"[\w.+-]+@[\w-]+(\.[\w-]+)+", text)`
    finds them, but in linear time: that regex rescans a long run of word characters from each of its positions."""
    lo = 0
    while (at := text.find("@", lo)) >= 0:
        domain = _EMAIL_DOMAIN.match(text, at + 1)
        local = _EMAIL_LOCAL.match(text[lo:at][::-1]) if domain else None
        if local:
            yield at - local.end(), domain.end()
            lo = domain.end()
        else:
            lo = at + 1


def _without_emails(text: str) -> str:
    out, prev = [], 0
    for a, b in _email_spans(text):
        out.append(text[prev:a])
        prev = b
    out.append(text[prev:])
    return "".join(out)


def _boilerplate_reason(line: str) -> str | None:
    s = line.strip()
    words = s.replace("|", " ").split()
    if not s:
        return None
    if len(s) <= 120 and _COPYRIGHT.search(s):
        return "copyright"
    if len(s) <= 100 and next(_email_spans(s), None):
        return "byline/e-mail"
    if _BYLINE_ONLY.match(s):
        return "byline"
    if _DATESTAMP.match(s):
        return "date stamp"
    if len(s) <= 100 and _CAPTION.search(s):
        return "caption"
    if len(s) <= 80 and _PROMO.search(s):
        return "promo"
    if len(s) <= 40 and words and sum(w.lower().strip(".:") in _MENU_WORDS or w.endswith("로고") for w in words) >= max(1, len(words) - 1):
        return "menu"
    if len(s) <= 20 and _BULLET.match(s):
        return "menu"
    if len(s) <= 3 and not is_sentence(s):
        return "fragment"
    return None


def clean_lines(lines: list[str]) -> tuple[list[str], list[str]]:
    """Story lines and dropped boilerplate lines, in order. Blank lines are kept as separators."""
    kept: list[str] = []
    dropped: list[str] = []
    seen_short: set[str] = set()
    in_link_block = False
    for raw in lines:
        line = raw.strip()
        if not line:
            kept.append("")
            continue
        if _LINK_BLOCK.match(line):
            in_link_block = True
            dropped.append(line)
            continue
        if in_link_block:
            # A link block runs until something that reads like story text again.
            if len(line) >= 80 and _TERMINAL.search(line) and _boilerplate_reason(line) is None:
                in_link_block = False
            else:
                dropped.append(line)
                continue
        if _boilerplate_reason(line):
            dropped.append(line)
            continue
        line = _CAPTION_INLINE.sub("", line).strip()
        if len(line) > 100:
            line = _without_emails(line).strip()
        if not line:
            dropped.append(raw.strip())
            continue
        if len(line) < 100 and not is_sentence(line):
            key = re.sub(r"\W+", "", line)
            if key in seen_short:  # repeated caption or headline line
                dropped.append(line)
                continue
            seen_short.add(key)
        kept.append(line)
    return kept, dropped


def _blocks(lines: list[str], markdown: bool) -> list[str]:
    """Paragraphs: one per line for news text files, blank-line separated blocks for Markdown."""
    if not markdown:
        return [ln for ln in lines if ln]
    out, cur = [], []
    for ln in lines + [""]:
        if ln:
            cur.append(ln)
        elif cur:
            out.append(" ".join(cur))
            cur = []
    return out


def _links(text: str, image: bool) -> str:
    r"""Images `![alt](url)` removed, or links `[text](url)` replaced by their text: what
    `re.sub(r"!\[[^\]]*\]\([^)]*\)", "", text)` or `re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", text)` return, in
    linear time (the regexes rescan the text after every '[' of "[[[[...")."""
    opener = "![" if image else "["
    out, done, pos = [], 0, 0
    while (p := text.find(opener, pos)) >= 0:
        # Every opener before the same ']' reaches that ']' and shares its outcome.
        q = text.find("]", p + len(opener))
        if q < 0:
            break
        pos = q + 1
        if text.startswith("(", pos) and (image or q > p + 1):
            r = text.find(")", pos + 1)
            if r < 0:
                break
            out.append(text[done:p] if image else text[done:p] + text[p + 1:q])
            done = pos = r + 1
    out.append(text[done:])
    return "".join(out)


def _strip_markdown(text: str) -> str:
    text = _links(text, image=True)
    text = _links(text, image=False)
    text = re.sub(r"(?m)^\s{0,3}#{1,6}\s*", "", text)
    text = re.sub(r"(?m)^\s{0,3}>\s?", "", text)
    return re.sub(r"(\*\*|__|`)", "", text)


def _similar(a: str, b: str) -> bool:
    ta, tb = set(re.findall(r"\w+", a)), set(re.findall(r"\w+", b))
    return bool(ta and tb) and len(ta & tb) / len(ta | tb) >= 0.6


def _is_heading(p: str) -> bool:
    return len(p) <= 150 and not is_sentence(p)


def build_articles(text: str, base: str, markdown: bool = False, source: str | None = None) -> list[Article]:
    """Clean one file's text and return its articles (several if it pastes several together), with IDs
    `base` or `base-a1`, `base-a2`, ..."""
    if markdown:
        text = _strip_markdown(text)
    kept, dropped = clean_lines(text.split("\n"))
    paragraphs = _blocks(kept, markdown)
    segments: list[list[str]] = [[]]
    has_story = False  # the last segment holds a paragraph that is not a heading
    for p in paragraphs:
        m = _ARTICLE_START.match(p)
        if m:
            dropped.append(p[: m.end()].strip())
            p = p[m.end():].strip()
            prev = segments[-1]
            if has_story:
                # Headlines just above the byline belong to the new article, not the previous one.
                carry = []
                while prev and _is_heading(prev[-1]):
                    carry.append(prev.pop())
                segments.append(carry[::-1])
                has_story = False
        if p:
            segments[-1].append(p)
            has_story = has_story or not _is_heading(p)
    segments = [s for s in segments if s]
    articles = []
    for i, seg in enumerate(segments, 1):
        title, body = _split_title(seg, dropped)
        body = _merge_headings(body)
        if not body:
            dropped.extend(seg)
            continue
        doc_id = base if len(segments) == 1 else f"{base}-a{i}"
        articles.append(Article(doc_id=doc_id, source=source or base, title=title, paragraphs=body, dropped=[]))
    if articles:
        articles[0].dropped = dropped
    return articles


def _split_title(paras: list[str], dropped: list[str]) -> tuple[str | None, list[str]]:
    """The first headline-like paragraph before any story sentence is the title; echoes of it are dropped."""
    title = None
    body: list[str] = []
    for p in paras:
        if title is None and not body and _is_heading(p) and len(p) >= 8:
            title = p
            continue
        if title is not None and _is_heading(p) and _similar(p, title):
            dropped.append(p)
            continue
        body.append(p)
    return title, body


MIN_PARAGRAPH_CHARS = 60


def _merge_headings(paras: list[str]) -> list[str]:
    """Subheadings and deck lines join the paragraph that follows them (or precede nothing: dropped)."""
    out: list[str] = []
    pending: list[str] = []
    for p in paras:
        if _is_heading(p):
            pending.append(p)
            continue
        if pending:
            head = "\n".join(pending)
            if len(head) >= MIN_PARAGRAPH_CHARS:
                out.append(head)
            else:
                p = head + "\n" + p
            pending = []
        out.append(p)
    if pending:
        tail = "\n".join(pending)
        if out and len(tail) < MIN_PARAGRAPH_CHARS:
            out[-1] = out[-1] + "\n" + tail
        else:
            out.append(tail)
    return out


SLUG_CHARS = 24
_HASH_WORD = re.compile(r"[0-9a-f]{12,}")


def doc_slug(source: str) -> str:
    """Short readable article ID from a file name, in whole words: 'harbor-bridge-collapse.txt' ->
    'harbor-bridge-collapse'; a hash-like word is shortened: '000_5cafd9bf1db64a43.txt' -> '000-5cafd9bf'."""
    stem = Path(source).stem
    slug = re.sub(r"[^0-9A-Za-z가-힣]+", "-", unicodedata.normalize("NFC", stem)).strip("-").lower()
    words = [w[:8] if _HASH_WORD.fullmatch(w) else w for w in slug.split("-")]
    slug = words[0][:SLUG_CHARS]  # only a first word longer than the budget is cut
    for w in words[1:]:
        if len(slug) + 1 + len(w) > SLUG_CHARS:
            break
        slug += "-" + w
    if not slug:
        slug = "doc-" + hashlib.sha1(source.encode()).hexdigest()[:6]
    return slug


def doc_bases(files: list[tuple[str, str]], previous: dict[str, str] | None = None) -> dict[str, str]:
    """Article-ID base of each file, given as (key, source name): the base it had in the previous build, so
    IDs stay stable as files come and go; else its slug, plus a short hash of its key when the slug is
    taken (two `news.txt` under two roots are two files with two IDs)."""
    previous = previous or {}
    bases: dict[str, str] = {}
    taken: set[str] = set()
    for key, _ in files:
        base = previous.get(key)
        if base and base not in taken:
            bases[key] = base
            taken.add(base)
    new = [(key, source) for key, source in files if key not in bases]
    slugs = [doc_slug(source) for _, source in new]
    shared = {slug for slug, n in Counter(slugs).items() if n > 1}  # (a count per file was quadratic: 100 s at 100k files)
    for (key, _), slug in zip(new, slugs):
        base = slug
        if slug in taken or slug in shared:
            base = f"{slug}-{hashlib.sha1(key.encode()).hexdigest()[:4]}"
        n = 2
        while base in taken:
            base = f"{slug}-{hashlib.sha1(f'{key}#{n}'.encode()).hexdigest()[:4]}"
            n += 1
        bases[key] = base
        taken.add(base)
    return bases


def load_corpus(
    paths: list[Path],
    strict: bool = False,
    unchanged: Callable[[str, str], bool] | None = None,
    discovered: tuple[list[Found], list[tuple[str, str]], int] | None = None,
    previous_bases: dict[str, str] | None = None,
) -> Corpus:
    """Read every supported file under `paths`; unreadable files are skipped with a reason.

    Files for which `unchanged(key, base)` is true are not read: they appear as `reused` placeholders.
    `discovered` is what `discover(paths)` returned, when the caller has already walked the folders;
    `previous_bases` (key -> base) keeps the article IDs of files the index already holds.
    """
    found, skipped, ignored = discovered or discover(paths)
    corpus = Corpus(skipped=list(skipped), ignored=ignored)
    explicit = {file_key(p) for p in paths if p.is_file()}
    bases = doc_bases([(key, source) for _, source, key in found], previous_bases)
    for path, source, key in found:
        base = bases[key]
        if unchanged and unchanged(key, base):
            corpus.files.append(CorpusFile(path, source, "", [], base, reused=True, key=key))
            continue
        try:
            text, data, warning = read_text(Path(path))
        except CorpusError as e:
            if strict or key in explicit:
                raise CorpusError(f"{path}: {e}") from None
            corpus.skipped.append((path, str(e)))
            continue
        if warning:
            corpus.warnings.append(f"{path}: {warning}")
        markdown = os.path.splitext(path)[1].lower() in (".md", ".markdown")
        articles = build_articles(text, base, markdown=markdown, source=source)
        if not articles:
            corpus.skipped.append((path, "no article text after removing boilerplate"))
            continue
        corpus.files.append(CorpusFile(path, source, hashlib.sha256(data).hexdigest(), articles, base, key=key))
    if not corpus.files:
        detail = f" ({len(corpus.skipped)} file(s) skipped: {corpus.skipped[0][1]})" if corpus.skipped else ""
        where = ", ".join(str(p) for p in paths)
        raise CorpusError(f"no readable articles in {where}{detail}; ragqa reads .txt, .md and .html files")
    return corpus
