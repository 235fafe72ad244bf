"""Audience toolset: who listens to what, as segments of a corpus or of this server's consenting principals.

"Who are my listeners" is answered with clusters of taste vectors (recommend/segments.py), described only by
aggregates above a k-anonymity floor (ECHOTUNE_SEGMENT_MIN_SIZE, default 5). Over the server's principals only
those who opted in with ``share_taste_for_segments`` are counted, and only the aggregates leave their scope: no
user id, no play, no per-principal figure is ever in a reply. Corpora are the operator-loaded public data sets
(``echotune-mcp recommend corpus add``), listed with the licence they were loaded under.
"""

from __future__ import annotations

from collections import defaultdict
from functools import partial
from typing import Annotated, Literal

from mcp_types import CallToolResult
from pydantic import BaseModel, Field

from ..app import App
from ..errors import BadInput
from ..principal import current_principal
from ..recommend.corpus import CorpusInfo, corpora_dir, load_corpus
from ..recommend.corpus import list_corpora as stored_corpora
from ..recommend.segments import (
    Population,
    PopulationTooSmall,
    SegmentReport,
    artist_key,
    artist_tags_of,
    population_from_corpus,
    population_from_vectors,
    segment,
)
from .base import Toolset, current_app, tool_result

MAX_PRINCIPALS = 100_000
EVENT_PAGE = 1000
MAX_PLAYS_PER_PRINCIPAL = 50_000  # the newest; bounds the time one segmentation spends reading a long history


class CorpusView(BaseModel):
    id: str
    name: str
    format: str
    licence: str = Field(description="the licence the operator loaded it under; results drawn from it inherit it")
    commercial_use: bool = Field(description="whether that licence allows commercial use")
    users: int
    items: int
    interactions: int
    version: int
    added_at: float
    malformed_rows: int
    source_files: list[str]


class CorpusList(BaseModel):
    corpora: list[CorpusView]
    message: str


class SegmentSharing(BaseModel):
    opted_in: bool
    changed: bool = Field(description="false when it already was so (the call is idempotent)")
    since: float | None = Field(description="when you opted in (epoch seconds), if you are in")
    participants: int = Field(description="principals opted in now, you included if you are in")
    message: str


class SegmentsResult(SegmentReport):
    licence: str | None = Field(None, description="the corpus's licence (population=corpus)")
    commercial_use: bool | None = None
    opted_in_without_history: int | None = Field(None, description=(
        "population=principals: opted-in principals with no imported plays (not clustered)"))


def _view(info: CorpusInfo) -> CorpusView:
    return CorpusView(id=info.id, name=info.name, format=info.format, licence=info.licence,
                      commercial_use=info.commercial_use, users=info.users, items=info.items,
                      interactions=info.interactions, version=info.version, added_at=info.added_at,
                      malformed_rows=info.malformed_rows, source_files=[f["name"] for f in info.source_files])


toolset = Toolset("audience", "Listener segments of a corpus or of this server's opted-in principals (aggregates "
                             "above a k-anonymity floor only), the operator's corpora, and your opt-in.")


@toolset.tool(title="List corpora", read_only=True, idempotent=True)
async def list_corpora() -> Annotated[CallToolResult, CorpusList]:
    """The public data sets the operator loaded (echotune-mcp recommend corpus add), each with its licence,
    whether that allows commercial use, its size and version. Recommendations and segments drawn from a
    corpus carry its licence; a non-commercial corpus's results are for non-commercial use."""
    infos = stored_corpora(corpora_dir(current_app().settings))
    message = (f"{len(infos)} corpora" if infos else
               "no corpus loaded; the operator adds one with `echotune-mcp recommend corpus add FILE... "
               "--format interactions|playlists --licence TEXT`")
    return tool_result(CorpusList(corpora=[_view(i) for i in infos], message=message), summary=message)


@toolset.tool(title="Share taste for segments", read_only=False, destructive=False, idempotent=True)
async def share_taste_for_segments(
    opt_in: Annotated[bool, Field(description=(
        "true: count my imported listening in this server's listener segments (only aggregates of at "
        "least the floor of listeners are ever shown); false: stop counting it"))],
) -> Annotated[CallToolResult, SegmentSharing]:
    """Opt in to (or out of) having your imported listening counted in segment_listeners over this
    server's principals. Off by default. While in, your plays contribute to segment sizes and to
    the artists and tags named for a segment, never shown on their own: a segment or a named
    artist/tag needs at least the server's floor of listeners. Opting out takes effect at the next
    segmentation; your plays stay yours (nothing is deleted). Safe to repeat."""
    owner = current_principal()
    store = current_app().storage.segment_optins
    if opt_in:
        record, changed = await store.opt_in(owner)
        since: float | None = record.created_at
    else:
        changed = await store.opt_out(owner)
        since = None
    participants = await store.count_all()
    state = "in" if opt_in else "out"
    message = (f"you are opted {state}" + ("" if changed else " (already were; nothing changed)")
               + f"; {participants} principal(s) share their taste for segments")
    return tool_result(SegmentSharing(opted_in=opt_in, changed=changed, since=since,
                                      participants=participants, message=message), summary=message)


@toolset.tool(title="Segment listeners", read_only=True, idempotent=True)
async def segment_listeners(
    population: Annotated[Literal["corpus", "principals"], Field(description=(
        "corpus: the users of an operator-loaded corpus; principals: this server's users who opted in "
        "with share_taste_for_segments"))] = "corpus",
    corpus_id: Annotated[str | None, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$",
                                           description=(
        "population=corpus: which corpus (list_corpora; default the newest); population=principals: a "
        "corpus whose tags describe the segments (optional)"))] = None,
    segments: Annotated[int, Field(ge=2, le=20, description="how many segments to look for (2-20)")] = 8,
    min_segment_size: Annotated[int | None, Field(ge=2, le=1000, description=(
        "smallest segment reported; may raise the server's floor (ECHOTUNE_SEGMENT_MIN_SIZE), never "
        "lower it"))] = None,
    small_segments: Annotated[Literal["merge", "suppress"], Field(description=(
        "a cluster below the floor: merge its members into their nearest segments, or withhold it and "
        "report only how many were withheld"))] = "merge",
    seed: Annotated[int, Field(ge=0, le=2**31 - 1, description="same seed, same data: same segments")] = 0,
) -> Annotated[CallToolResult, SegmentsResult]:
    """Clusters of listeners by taste, each with its size, the artists and tags that define it
    (over-represented against the whole population, with lift) and a generated name such as
    "indie rock / Arctic Monkeys fans". Taste vectors are tf-idf weighted artist plays, reduced by
    truncated SVD and clustered with k-means (seeded, so repeatable).

    Privacy: no segment smaller than the floor is reported (merged into its nearest, or withheld and
    counted), an artist or tag is named only if at least the floor of the segment's members have
    it, and a population smaller than the floor is refused. Over principals only those who opted in
    count, and the reply holds aggregates only: never a user id or a play."""
    app = current_app()
    floor = app.settings.segment_min_size
    if min_segment_size is not None:
        if min_segment_size < floor:
            raise BadInput("min_segment_size", f"{min_segment_size} is below this server's floor of {floor} "
                           "(ECHOTUNE_SEGMENT_MIN_SIZE); it can be raised, never lowered",
                           f"{floor} to 1000, or leave it out")
        floor = min_segment_size
    extra: dict = {}
    if population == "corpus":
        corpus = await _corpus(app, corpus_id)
        pop = await app.cpu.run(population_from_corpus, corpus, start_within=app.settings.max_wait_seconds)
        extra = {"licence": corpus.info.licence, "commercial_use": corpus.info.commercial_use}
    else:
        tags = None
        if corpus_id is not None:
            corpus = await _corpus(app, corpus_id)
            tags = await app.cpu.run(artist_tags_of, corpus, start_within=app.settings.max_wait_seconds)
            extra = {"licence": corpus.info.licence, "commercial_use": corpus.info.commercial_use}
        pop, without, capped = await _principals(app, tags)
        extra["opted_in_without_history"] = without
    try:
        report, _labels = await app.cpu.run(partial(segment, pop, segments, floor, seed=seed, small=small_segments),
                                            start_within=app.settings.max_wait_seconds)
    except PopulationTooSmall as exc:
        hint = (" (principals count once they opt in with share_taste_for_segments and have imported plays)"
                if population == "principals" else "")
        raise BadInput("population", f"{exc}{hint}") from None
    result = SegmentsResult(**report.model_dump(), **extra)
    if population == "principals" and capped:
        result.notes.append(f"{capped} principal(s) have more than {MAX_PLAYS_PER_PRINCIPAL} plays; their "
                            f"newest {MAX_PLAYS_PER_PRINCIPAL} were used")
    summary = (f"{len(result.segments)} segments of {result.members} {population} (floor {floor}): "
               + "; ".join(f"{s.name} ({s.size})" for s in result.segments))
    return tool_result(result, summary=summary)


async def _corpus(app: App, corpus_id: str | None):
    """The corpus ``corpus_id`` names (default the newest), loaded in the CPU pool; BadInput if there is none."""
    root = corpora_dir(app.settings)
    infos = stored_corpora(root)
    if not infos:
        raise BadInput("corpus_id", "no corpus is loaded", "the operator adds one with `echotune-mcp recommend "
                       "corpus add`")
    chosen = corpus_id or infos[-1].id
    try:
        return await app.cpu.run(load_corpus, root, chosen, start_within=app.settings.max_wait_seconds)
    except KeyError:
        raise BadInput("corpus_id", f"no corpus {corpus_id!r}", [i.id for i in infos]) from None


async def _principals(app: App, tags: dict[str, tuple[str, ...]] | None) -> tuple[Population, int, int]:
    """Opted-in principals' plays per artist, read owner by owner (each read scoped to that owner); also how
    many had no plays and how many were read only up to MAX_PLAYS_PER_PRINCIPAL."""
    owners = await app.storage.segment_optins.opted_in_owners(MAX_PRINCIPALS)
    vectors: list[dict[str, float]] = []
    names: dict[str, str] = {}
    without = capped = 0
    for owner in owners:
        vec: defaultdict[str, float] = defaultdict(float)
        cursor = None
        read = 0
        while True:
            if read >= MAX_PLAYS_PER_PRINCIPAL:
                capped += 1
                break
            page, cursor = await app.storage.listening.find(owner, limit=EVENT_PAGE, cursor=cursor)
            read += len(page)
            for ev in page:
                # Plays only: a synced top-list entry or saved track (recommend/sync.py) is not a play.
                if ev.signal == "play" and ev.artist and ev.artist.strip():
                    key = artist_key(ev.artist)
                    vec[key] += ev.weight
                    names.setdefault(key, ev.artist.strip())
            if cursor is None:
                break
        if vec:
            vectors.append(dict(vec))
        else:
            without += 1
    pop = await app.cpu.run(population_from_vectors, vectors, names, tags,
                            start_within=app.settings.max_wait_seconds)
    return pop, without, capped
