"""Answer one question: retrieve, generate (or extract), verify every citation, assemble the Answer."""

from __future__ import annotations

import time
from typing import Callable

from .citations import verify
from .extractive import extractive_answer
from .lexical import is_korean
from .llm import answer_schema, build_messages, grammar_for, language_of, parse_answer, select_context
from .retrieve import Retriever
from .schema import Answer, Citation

NOT_ANSWERABLE = {
    "en": "The articles don't say.",
    "ko": "기사에서는 이 질문에 대한 답을 찾을 수 없습니다.",
}
ENABLE_LLM = "run `ragqa models pull qwen2.5-1.5b` for answers written by the local LLM"


def ask(
    question: str,
    retriever: Retriever,
    settings,
    llm=None,
    k: int | None = None,
    mode: str | None = None,
    on_text: Callable[[str], None] | None = None,
    llm_note: str | None = None,
    search_query: str | None = None,
) -> Answer:
    """Answer `question` from the index; `llm=None` gives the extractive answer.

    `search_query` (a follow-up rewritten into a standalone question) replaces the question for retrieval.
    """
    start = time.perf_counter()
    result = retriever.search(search_query or question, k, mode)
    timings = {"retrieval_s": round(time.perf_counter() - start, 4)}
    question = result.query if search_query is None else question.strip()
    lang = language_of(question)
    notes = list(result.notes)
    hits = result.hits
    if llm is None:
        hits, follows = with_next_paragraphs(hits, retriever.index)
        similarity = retriever.similarity_to(result.query, result.mode)
        extract = extractive_answer(
            question, hits, retriever.index.bm25.idf, follows, similarity, retriever.answer_similarity
        )
        answerable, raw, context = extract.answerable, extract.sentences, hits
        backend = "extractive"
        notes.append(f"extractive answer, sentences quoted from the articles ({llm_note or 'no LLM'}); {ENABLE_LLM}")
        if hits and (lang == "ko") != is_korean(hits[0].text):
            asked, found = ("English", "Korean") if lang == "en" else ("Korean", "English")
            if similarity is not None:
                how = (
                    f"the answer quotes the {found} sentences closest in meaning to the question; "
                    f"the local LLM would answer in {asked}"
                )
            else:
                how = (
                    "after a lexical search an extractive answer quotes sentences that share the question's words, "
                    "so across languages it finds few: search in hybrid or dense mode (an index with an embedding "
                    "model, the default), or let the local LLM answer"
                )
            notes.append(f"the question is in {asked} and the passages found are in {found}: {how}")
    else:
        context = select_context(hits, settings.context_max_tokens, llm.count) if hits else []
        if not context:
            answerable, raw = False, []
        else:
            quote = (lang == "ko") != is_korean(" ".join(h.text for h in context[:3]))
            messages = build_messages(question, context, lang, quote)
            gen = llm.generate(
                llm.render(messages), grammar_for(answer_schema([h.chunk_id for h in context], quote)),
                settings.answer_max_tokens, on_text,
            )
            answerable, raw, complete = parse_answer(gen.text)
            if not complete:
                notes.append(f"the answer was cut off at {gen.completion_tokens} tokens; complete sentences kept")
            timings |= {
                "prompt_tokens": gen.prompt_tokens, "completion_tokens": gen.completion_tokens,
                "first_token_s": round(gen.first_token_s, 3), "generation_s": round(gen.total_s, 3),
            }
        backend = "llm"
    sentences = verify(raw, {h.chunk_id: h for h in context})
    if not answerable or not sentences:
        answerable, sentences = False, []
    cited = list(dict.fromkeys(c for s in sentences for c in s.citations))
    by_id = {h.chunk_id: h for h in hits}
    timings["total_s"] = round(time.perf_counter() - start, 4)
    return Answer(
        question=question,
        answer=" ".join(f"{s.text} [{', '.join(s.citations)}]" for s in sentences) or NOT_ANSWERABLE[lang],
        answerable=answerable,
        backend=backend,
        language=lang,
        mode=result.mode,
        sentences=sentences,
        citations=[
            Citation(chunk_id=c, doc_id=by_id[c].doc_id, title=by_id[c].title, text=by_id[c].text) for c in cited
        ],
        retrieved=[{"chunk_id": h.chunk_id, "score": h.score} for h in hits],
        context=[h.chunk_id for h in context],
        timings=timings,
        notes=notes,
    )


def with_next_paragraphs(hits: list, index, top: int = 3) -> tuple[list, dict[str, str]]:
    """Hits plus the passage that follows each of the top ones in its article (score 0, ranked last)."""
    have = {h.chunk_id for h in hits}
    extra, follows = [], {}
    for h in hits[:top]:
        row = index.rows[h.chunk_id] + 1
        if row < index.n and index.doc_id(row) == h.doc_id and index.chunk_ids[row] not in have:
            nxt = index.hit(row, len(hits) + len(extra) + 1, 0.0)
            have.add(nxt.chunk_id)
            extra.append(nxt)
            follows[nxt.chunk_id] = h.chunk_id
    return hits + extra, follows


def open_llm(settings, explicit: bool, notify: Callable[[str], None] | None = None):
    """(LocalLLM or None, why not). The default preset is downloaded on first use when the hub is
    reachable; an LLM the user named explicitly must load, or this raises."""
    from .errors import ModelUnavailable
    from .llm import load_llm
    from .models import download_blocker, resolve_llm

    spec = settings.llm
    if spec == "none":
        return None, "--llm none"
    try:
        path, preset = resolve_llm(spec, settings.models_dir)
        if path is None and preset is not None:
            blocker = download_blocker(settings)
            if blocker and not explicit:
                return None, f"no LLM: '{spec}' is not downloaded and {blocker}"
            if not blocker and notify:
                notify(f"downloading {preset.name} ({preset.size}) for LLM answers; --llm none skips this")
        return load_llm(spec, settings), None
    except ModelUnavailable as e:
        if explicit:
            raise
        return None, f"no LLM: {str(e).split(';')[0]}"
