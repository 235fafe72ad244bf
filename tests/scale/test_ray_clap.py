"""The recommender's CLAP on Ray Serve (issue #18): a local 2-CPU Ray cluster with two replicas of a tiny random
CLAP (``echotune-clap``); the embeddings equal the in-process ones, and ``similar_to`` through the MCP server with
ECHOTUNE_ENGINE_URL=ray:auto embeds there (the server has no CLAP weights of its own) and says so; with no CLAP
application deployed the result says why it compared by features only.

Its own module-scoped cluster (test_ray_engine's is module-scoped too and shut down before this module starts);
nothing leaves the machine: 127.0.0.1, no dashboard, no HTTP proxy, usage statistics off.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("ray.serve")

from echotune_mcp.config import Settings
from echotune_mcp.engine import ray_serve as rs
from echotune_mcp.engine.ray_client import RayEngine
from echotune_mcp.recommend import sound
from tests.recommend.test_similar_to import TOOLSETS, _compose
from tests.scale.conftest import local_ray_cluster
from tests.recommend.test_sound import TINY_DIM, _tone, save_tiny_clap


@pytest.fixture(scope="module")
def clap_cluster(tmp_path_factory):
    """Settings whose weights dir holds the tiny CLAP, with ``echotune-clap`` deployed on 2 replicas."""
    root = tmp_path_factory.mktemp("ray-clap")
    settings = Settings(data_dir=root / "data", allowed_roots=(root,))
    save_tiny_clap(settings.weights_dir / settings.clap_model)
    with local_ray_cluster():
        rs.deploy(settings, rs.DeployPlan(clap=True, replicas_min=2, replicas_max=2, cpus_per_replica=0.25),
                  wait_timeout_s=240)
        yield settings


def test_clap_embeddings_through_serve_equal_the_in_process_ones(clap_cluster):
    settings = clap_cluster
    local = sound.ClapEmbedder.from_dir(sound.clap_dir(settings))
    engine = RayEngine("ray:auto")
    texts = ["warm lofi hip hop", "fast techno", "a"]
    clips = [(_tone(220, 1.5), 44100), (_tone(330, 3.5, stereo=True), 44100), (_tone(440, 1.0, sr=48000), 48000)]

    async def scenario():
        info = await engine.clap_info()
        text = await engine.clap_text(texts)
        audio = await asyncio.gather(*(engine.clap_audios([c]) for c in clips))  # spread over both replicas
        return info, text, [a[0] for a in audio]

    assert engine.clap_deployed()
    info, text, audio = asyncio.run(scenario())
    assert info["model_id"] == settings.clap_model and info["dim"] == TINY_DIM and info["replica"], info
    np.testing.assert_allclose(text, local.text(texts), atol=1e-5)
    np.testing.assert_allclose(np.stack(audio), local.audios(clips), atol=1e-5)


def test_a_fit_and_a_prompt_embedded_on_the_cluster_rank_as_in_process(clap_cluster, tmp_path):
    """A server with no CLAP weights fits the corpus's tag embeddings and embeds a recommend prompt on the
    cluster; the ranking equals a fit and a prompt embedded in-process on the same weights, and both say where."""
    from dataclasses import replace

    from echotune_mcp.app import App
    from echotune_mcp.recommend import fitted as fitted_mod
    from echotune_mcp.recommend.service import RecommendRequest, recommend
    from tests.recommend.test_recommend_tools import tiny_corpus

    settings = clap_cluster
    out = {}
    for name, over in (("local", dict(models_dir=settings.weights_dir)),
                       ("ray", dict(engine_url="ray:auto", models_dir=tmp_path / "no-weights"))):
        s = replace(settings, data_dir=tmp_path / name / "data", **over)
        tmp = tmp_path / name
        (tmp / "data").mkdir(parents=True)
        (tmp / "tags.dat").write_text("tagID\ttagValue\n1\tshoegaze\n2\tdream pop\n3\tthrash metal\n4\tpolka\n")
        (tmp / "tagged.dat").write_text("userID\tartistID\ttagID\n" + "".join(
            f"{u}\t{a}\t{t}\n" for u, a, t in [(0, 1, 1), (0, 2, 2), (1, 3, 3), (1, 4, 4), (2, 5, 1), (2, 6, 3)]))
        cid = tiny_corpus(s.data_dir, tmp, tag_files=[tmp / "tagged.dat"], tag_names=tmp / "tags.dat")
        prov = fitted_mod.fit_and_save(s, cid)
        fitted = fitted_mod.load(fitted_mod.models_root(s), cid)

        async def ask(s=s, cid=cid):
            async with App(s) as app:
                return await recommend(app, "nobody", RecommendRequest(kind="artist", k=3, corpus_id=cid,
                                                                       prompt="hazy wall of guitars"))

        out[name] = (prov["params"]["prompt_embeddings"], fitted, asyncio.run(ask()))
    (lp, lfit, local), (rp, rfit, remote) = out["local"], out["ray"]
    assert lp == f"clap:{settings.clap_model} over 4 tags", lp
    assert rp == f"clap:{settings.clap_model} over 4 tags (ray: the echotune-clap Serve application on ray:auto)", rp
    assert list(rfit.tag_vocab) == list(lfit.tag_vocab)
    np.testing.assert_allclose(rfit.tag_clap, lfit.tag_clap, atol=1e-5)
    assert local.model["prompt_embeddings"] == lp + "; prompt embedded in-process", local.model
    assert remote.model["prompt_embeddings"] == rp + "; prompt embedded ray: the echotune-clap Serve application " \
                                                      "on ray:auto", remote.model
    assert any("tags CLAP finds near it" in u for u in remote.seeds_used), remote.seeds_used
    assert [(i.item_id, i.reasons) for i in remote.items] == [(i.item_id, i.reasons) for i in local.items]
    assert [i.score for i in remote.items] == pytest.approx([i.score for i in local.items], abs=1e-4)


def test_similar_to_embeds_on_the_cluster_and_says_so_then_explains_when_clap_is_gone(clap_cluster, make_client,
                                                                                     tmp_path):
    from ray import serve

    from echotune_mcp.engine.musicgen_backend import get_engine

    settings = clap_cluster
    local = sound.ClapEmbedder.from_dir(sound.clap_dir(settings))

    async def similar(client, artifact_id):
        r = await client.call_tool("similar_to", {"artifact_id": artifact_id, "k": 5})
        assert not r.is_error, r
        return r.structured_content

    async def scenario():
        # the server's own models dir has no CLAP: every embedding below comes from the cluster
        async with make_client(engine_url="ray:auto", toolsets=TOOLSETS, models_dir=tmp_path / "no-weights") as (
                client, app):
            a = await _compose(client, {"prompt": "upbeat house", "bpm": 124, "key": "A minor", "duration_s": 4})
            b = await _compose(client, {"prompt": "deep house", "bpm": 124, "key": "A minor", "duration_s": 4,
                                        "seed": 11})
            on_ray = await similar(client, a["mix_artifact_id"])
            samples = {}
            for art in (a, b):
                from echotune_mcp.audio_inputs import load_audio_input

                inp = await load_audio_input(app, "local", art["mix_artifact_id"], field="artifact_id",
                                             allow_paths=False)
                samples[art["mix_artifact_id"]] = (inp.audio.samples, inp.audio.sample_rate)
            await asyncio.to_thread(serve.delete, rs.CLAP_APP)  # CLAP is no longer deployed: the next call says so
            get_engine(app.settings)._deployed_at.pop("clap", None)
            c = await _compose(client, {"prompt": "calm ambient", "bpm": 76, "key": "E major", "duration_s": 4})
            gone = await similar(client, c["mix_artifact_id"])
            return a, b, on_ray, samples, gone

    a, b, on_ray, samples, gone = asyncio.run(scenario())
    assert on_ray["embeddings"] == f"clap:{settings.clap_model}", on_ray
    assert on_ray["embedded_by"].startswith("ray: the echotune-clap Serve application"), on_ray
    other = next(i for i in on_ray["items"] if i["item_id"] == b["mix_artifact_id"])
    va, vb = (local.audio(*samples[art["mix_artifact_id"]]) for art in (a, b))
    assert f"(cosine {float(np.dot(va, vb)):.2f})" in " ".join(other["reasons"]), other  # what in-process gives
    assert gone["embeddings"] is None and gone["embedded_by"] is None, gone
    assert any("no echotune-clap application runs on the Ray cluster" in n and "engine deploy --clap" in n
               and "models pull" in n for n in gone["notes"]), gone["notes"]
