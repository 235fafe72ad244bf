"""Recommend toolset: what to listen to next, from an operator-loaded corpus and the user's own plays.

Spotify no longer offers recommendations to new apps, so we rank ourselves: a hybrid model (item-kNN, EASE,
ALS, tag content, popularity) fitted over a public corpus as a versioned artifact, with the caller's own
history folded in at query time (never anyone else's). ``fit_recommender`` fits a corpus as a job.
"""

from __future__ import annotations

from typing import Annotated, Literal

from mcp.server.mcpserver import Context
from mcp_types import CallToolResult
from pydantic import Field

from ..app import App
from ..errors import BadInput
from ..principal import current_principal
from ..views import JobView
from ..recommend.service import NoModel, RecommendRequest, RecommendResult, recommend
from ..recommend.sound import SimilarResult, find_similar
from .base import Toolset, current_app, tool_result
from .common import WaitSeconds, job_result

MAX_SEEDS = 50
SeedList = Annotated[list[Annotated[str, Field(min_length=1, max_length=300)]], Field(max_length=MAX_SEEDS)]
CorpusId = Annotated[str | None, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$", description=(
    "the corpus to recommend from (recommend corpus list); default: the newest fitted corpus of the kind asked"))]
K = Annotated[int, Field(ge=1, le=200, description="how many items (1-200)")]
Unit = Annotated[float, Field(ge=0.0, le=1.0)]
ProviderName = Literal["spotify", "ytmusic"]


toolset = Toolset("recommend", "Recommendations from a fitted corpus model and your own listening history: "
                               "tracks and artists with reasons, seeds, diversity and novelty.")


async def _answer(app: App, kind: Literal["track", "artist"], **kwargs) -> CallToolResult:
    """Both recommend tools: the request, answered for the caller; no fitted model is the corpus_id's fault."""
    request = RecommendRequest(kind=kind, **kwargs)
    try:
        result = await recommend(app, current_principal(), request, hub=app.providers)
    except NoModel as exc:
        raise BadInput("corpus_id", str(exc)) from None
    return tool_result(result, summary=result.message)


@toolset.tool(title="Recommend tracks", read_only=True, open_world=True, ui="playlist")
async def recommend_tracks(
    seed_tracks: Annotated[SeedList, Field(description=(
        "tracks to start from: Spotify ids/URIs or 'Artist - Title' (up to 50)"))] = [],  # noqa: B006
    seed_artists: Annotated[SeedList, Field(description="artist names to start from (up to 50)")] = [],  # noqa: B006
    seed_playlist: Annotated[str | None, Field(min_length=1, max_length=200, description=(
        "a playlist id or link on seed_playlist_provider whose tracks are the seeds"))] = None,
    seed_playlist_provider: Annotated[ProviderName, Field(description="where seed_playlist lives")] = "spotify",
    seed_artifact: Annotated[str | None, Field(min_length=1, max_length=100, description=(
        "an audio artifact of ours: tracks that sound like it"))] = None,
    prompt: Annotated[str | None, Field(min_length=1, max_length=300, description=(
        "words for what you want, matched to tags and genres (e.g. 'dreamy shoegaze')"))] = None,
    my_taste: Annotated[bool, Field(description="use your imported listening history")] = True,
    k: K = 20,
    exclude_known: Annotated[bool, Field(description="never an item you have played")] = True,
    diversity: Annotated[Unit, Field(description="0 = best matches; up to 1 = more varied list")] = 0.0,
    novelty: Annotated[Unit, Field(description="0 = no change; up to 1 = favour less popular items")] = 0.0,
    provider: Annotated[ProviderName | None, Field(description=(
        "also find each track on this provider (ready to add to a playlist)"))] = None,
    corpus_id: CorpusId = None,
) -> Annotated[CallToolResult, RecommendResult]:
    """Tracks to listen to next, each with short reasons, from a fitted corpus and your own plays.

    Seeds (any mix): tracks, artists, a provider playlist, an audio artifact of ours, a text prompt,
    and your imported listening history (my_taste). Seeds that match nothing are listed in
    `ignored` with why. With no history and no seeds you get the corpus's popular items (and
    prompt matches if a prompt is given), and the message says so. The result names the model
    version that answered and the corpus licence (e.g. non-commercial)."""
    return await _answer(current_app(), "track", seed_tracks=seed_tracks, seed_artists=seed_artists,
                         seed_playlist=seed_playlist, seed_playlist_provider=seed_playlist_provider,
                         seed_artifact=seed_artifact, prompt=prompt, my_taste=my_taste, k=k,
                         exclude_known=exclude_known, diversity=diversity, novelty=novelty, provider=provider,
                         corpus_id=corpus_id)


@toolset.tool(title="Recommend artists", read_only=True, open_world=True)
async def recommend_artists(
    seed_artists: Annotated[SeedList, Field(description="artist names to start from (up to 50)")] = [],  # noqa: B006
    seed_tracks: Annotated[SeedList, Field(description=(
        "tracks whose artists are the seeds: Spotify ids/URIs or 'Artist - Title'"))] = [],  # noqa: B006
    seed_playlist: Annotated[str | None, Field(min_length=1, max_length=200, description=(
        "a playlist id or link on seed_playlist_provider whose artists are the seeds"))] = None,
    seed_playlist_provider: Annotated[ProviderName, Field(description="where seed_playlist lives")] = "spotify",
    prompt: Annotated[str | None, Field(min_length=1, max_length=300, description=(
        "words for what you want, matched to tags and genres"))] = None,
    my_taste: Annotated[bool, Field(description="use your imported listening history")] = True,
    k: K = 20,
    exclude_known: Annotated[bool, Field(description="never an artist you have played")] = True,
    diversity: Annotated[Unit, Field(description="0 = best matches; up to 1 = more varied list")] = 0.0,
    novelty: Annotated[Unit, Field(description="0 = no change; up to 1 = favour less popular artists")] = 0.0,
    corpus_id: CorpusId = None,
) -> Annotated[CallToolResult, RecommendResult]:
    """Artists to discover, each with short reasons ("you played Radiohead 40 times; listeners of
    Radiohead also play this"), from a fitted corpus and your own plays. Same seeds, cold start and
    reporting as recommend_tracks."""
    return await _answer(current_app(), "artist", seed_tracks=seed_tracks, seed_artists=seed_artists,
                         seed_playlist=seed_playlist, seed_playlist_provider=seed_playlist_provider, prompt=prompt,
                         my_taste=my_taste, k=k, exclude_known=exclude_known, diversity=diversity,
                         novelty=novelty, corpus_id=corpus_id)


@toolset.tool(title="Fit recommender", read_only=False, destructive=False, idempotent=True)
async def fit_recommender(
    ctx: Context,
    corpus_id: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$",
                                    description="the corpus to fit (recommend corpus list)")],
    force: Annotated[bool, Field(description="fit again even if the newest model is of this corpus "
                                             "version")] = False,
    wait_seconds: WaitSeconds = 20,
) -> Annotated[CallToolResult, JobView]:
    """Fit the recommendation model over a corpus, as a job with progress; stored as a new version.

    The previous version keeps answering until the new one is complete. Your own plays are not
    part of the fit (they are folded in when you ask), so new plays need no refit; a corpus that
    changed since the last fit does."""
    from ..recommend.fitted import submit_fit

    app = current_app()
    owner = current_principal()
    job = await submit_fit(app, owner, corpus_id, force=force)
    return await job_result(app, owner, job.id, wait_seconds, ctx)


@toolset.tool(title="Similar to a piece", read_only=True)
async def similar_to(
    artifact_id: Annotated[str, Field(min_length=1, max_length=300, description=(
        "an audio artifact of ours (id or echotune://artifacts/{id} URI): a generated mix, a remix, a stem "
        "or an upload"))],
    k: Annotated[int, Field(ge=1, le=100, description="how many tracks (1-100)")] = 10,
    corpus_id: Annotated[str | None, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$",
                                           description="compare with this corpus only (recommend corpus "
                                                       "list); default: every loaded corpus")] = None,
) -> Annotated[CallToolResult, SimilarResult]:
    """Catalogue tracks (and your other audio artifacts) that sound like a piece we made, nearest first.

    Compares measured audio features: tempo (half/double time counts as close), key on the circle
    of fifths (the relative major/minor is close), energy, danceability and loudness, from
    analyze_audio (cached, so a piece analysed before answers at once). Corpus tracks carry
    Spotify-style features from the corpus file; your other audio artifacts are analysed the same
    way and, when CLAP weights are downloaded (models pull clap-htsat-unfused), also compared by
    CLAP audio embeddings. Each item says which features are close ("same key A minor", "122 vs
    120 bpm", "similar energy (0.71 vs 0.68)"); `notes` says what was left out and why. Spotify
    gives new apps no audio features, so tracks are matched only within loaded corpora."""
    result = await find_similar(current_app(), current_principal(), artifact_id, k, corpus_id)
    q = result.query
    summary = (f"{len(result.items)} tracks like {q.artifact_id} ("
               + ", ".join(x for x in (f"{q.features['tempo']:.0f} bpm" if "tempo" in q.features else None,
                                       q.key) if x) + ")")
    return tool_result(result, summary=summary)
