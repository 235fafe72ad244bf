"""Issue #16, "In a real browser": each EchoTune view in headless Chromium, embedded by the test host through the
ext-apps host bridge and connected to a real ``echotune-mcp serve`` (see conftest.py for the chain).

What a person would do, and what must then be true on the server:
- mixer: generate a piece, mute the drums, Apply -> a ``remix`` call with ``mute: ["drums"]`` went through the
  bridge, the new mix (a new artifact, made by that remix job) is shown and plays (currentTime advances);
- player: an artifact plays; after ``regenerate_stem`` the A/B switch flips between the new mix and the one before;
- playlist (Prism-validated Spotify): drag item 0 below item 2 -> ``reorder_playlist`` with exactly that order, and
  the playlist on the provider is in that order; restore puts it back;
- job: a long generation is cancelled from the view -> the view says cancelled and ``get_job`` agrees;
- provenance: the lineage graph has a node per artifact of the lineage, and the licence decision is readable;
- playlist view on a recommend_tracks result (a small real corpus fitted by the server): each row with its reasons.
Every control of each view has an accessible name, and no view reaches the network.
Each test writes a screenshot to its output folder; ECHOTUNE_UPDATE_SCREENSHOTS=1 refreshes docs/img/<view>.png.
"""

from __future__ import annotations

import csv
import re
import time

import pytest

from tests.conftest import shared_path
from tests.providers.fake_spotify import sid

from .conftest import UI_TIMEOUT_MS, text_of, unlabelled_controls, wait_playing

expect = pytest.importorskip("playwright.async_api").expect

PROMPT = "funky groove with drums and bass, 110 bpm"
PLAY = '[data-testid="play-toggle"], [data-testid="play-button"]'


def tid(name: str) -> str:
    return f'[data-testid="{name}"]'


async def generate(host, duration_s: float = 4.0, seed: int = 7, **extra) -> dict:
    """A short composer piece (stems included), finished; returns generate_music's/get_job's wire result."""
    first = await host.agent_call("generate_music", prompt=PROMPT, duration_s=duration_s, backend="composer",
                                  seed=seed, wait_seconds=25, **extra)
    return await host.finished_job(first)


def artifacts_of(result: dict, kind: str | None = None) -> list[dict]:
    arts = result["structuredContent"].get("artifacts") or []
    return [a for a in arts if kind is None or a["kind"] == kind]


def mix_id(result: dict) -> str:
    """The mix of a finished composer/remix job: its audio artifact."""
    mixes = artifacts_of(result, "audio")
    assert len(mixes) == 1, [(a["kind"], a["name"]) for a in artifacts_of(result)]
    return mixes[0]["artifact_id"]


async def idle(frame, view: str) -> None:
    """The view has no request of its own in flight (aria-busy on its root is false)."""
    await expect(frame.locator(tid(f"view-{view}"))).to_have_attribute("aria-busy", "false", timeout=UI_TIMEOUT_MS)


async def play(scope) -> None:
    await scope.locator(PLAY).first.click(timeout=UI_TIMEOUT_MS)


async def test_mixer_mute_drums_apply_plays_the_new_mix(open_host):
    async with open_host() as host:
        gen = await generate(host)
        before = {a["artifact_id"] for a in artifacts_of(gen)}
        stems = {a["name"] for a in artifacts_of(gen, "stem")}
        assert {"stem-drums.wav", "stem-bass.wav"} <= stems, stems
        # the way a host gets there: generate_music links the job view, whose "Open mixer" switches in place
        frame = await host.open("job", tool="generate_music", arguments={"prompt": PROMPT, "duration_s": 4.0},
                                result=gen)
        await expect(frame.locator(tid("job-status"))).to_have_text(re.compile("succeeded", re.I),
                                                                     timeout=UI_TIMEOUT_MS)
        await frame.locator(tid("open-mixer")).click()
        await frame.locator(tid("view-mixer")).wait_for(timeout=UI_TIMEOUT_MS)

        for stem in ("drums", "bass"):
            row = frame.locator(tid(f"stem-{stem}"))
            await expect(row).to_be_visible(timeout=UI_TIMEOUT_MS)
            for control in ("gain", "mute", "solo", "pan"):
                await expect(row.locator(tid(f"{control}-{stem}"))).to_be_visible(timeout=UI_TIMEOUT_MS)
        # the stems play together (Web Audio) before anything is applied
        together = frame.locator(tid("mixer-play"))
        await together.click()
        await expect(together).to_have_attribute("aria-pressed", "true", timeout=UI_TIMEOUT_MS)
        await together.click()
        await expect(together).to_have_attribute("aria-pressed", "false", timeout=UI_TIMEOUT_MS)
        mute = frame.locator(tid("mute-drums"))
        await mute.click()
        await expect(mute).to_have_attribute("aria-pressed", "true", timeout=UI_TIMEOUT_MS)

        n = len(host.calls)
        await frame.locator(tid("apply-mix")).click()
        remix = await host.wait_for_call("remix", after=n, timeout_s=60)
        assert remix.error is None and not remix.result.get("isError"), remix.error or text_of(remix.result)
        assert remix.arguments.get("mute") == ["drums"], remix.arguments
        job_id = remix.structured["job_id"]

        # the view shows the new mix, and its player is on the artifact that remix job made
        result = frame.locator(tid("mix-result"))
        await expect(result).to_be_visible(timeout=60_000)
        done = await host.finished_job(await host.agent_call("get_job", job_id=job_id, wait_seconds=20))
        new_mix = mix_id(done)
        assert new_mix not in before
        report = done["structuredContent"]["result"]
        assert report["mix_artifact_id"] == new_mix
        assert "drums" in report["mix"]["silenced"] and "drums" not in report["mix"]["playing"], report["mix"]
        assert {"bass", "chords", "lead"} <= set(report["mix"]["playing"]), report["mix"]
        await frame.wait_for_function("id => window.__echotunePlayer && window.__echotunePlayer.artifactId() === id",
                                      arg=new_mix, timeout=UI_TIMEOUT_MS)

        await play(result)
        t0, t1 = await wait_playing(frame)
        assert t1 > t0
        # the audio came through the host as the compressed preview of the new mix
        reads = [c.params["uri"] for c in host.calls if c.method == "resources/read"]
        assert f"echotune://artifacts/{new_mix}/preview" in reads, reads
        assert not await unlabelled_controls(frame), "controls without an accessible name"
        await host.screenshot("mixer")

        # Regenerate one stem with the typed instruction: regenerate_stem on the piece, and the mixer loads the new take
        await frame.locator(tid("regenerate-text")).fill("sparser")
        n = len(host.calls)
        await frame.locator(tid("regenerate-bass")).click()
        regen = await host.wait_for_call("regenerate_stem", after=n, timeout_s=60)
        assert regen.error is None and not regen.result.get("isError"), regen.error or text_of(regen.result)
        assert (regen.arguments["stem"], regen.arguments.get("instruction")) == ("bass", "sparser"), regen.arguments
        assert regen.arguments["artifact"] in (mix_id(gen), f"echotune://artifacts/{mix_id(gen)}")
        job = await host.finished_job(await host.agent_call("get_job", job_id=regen.structured["job_id"],
                                                            wait_seconds=20))
        new_bass = job["structuredContent"]["result"]["stems"]["bass"]
        assert new_bass not in before
        deadline = time.monotonic() + 30
        while f"echotune://artifacts/{new_bass}/preview" not in [c.params.get("uri") for c in host.calls]:
            assert time.monotonic() < deadline, "the mixer did not load the regenerated bass stem"
            await host.page.wait_for_timeout(200)


async def test_player_plays_and_ab_switches_after_regenerate_stem(open_host):
    async with open_host() as host:
        gen = await generate(host, seed=11)
        original = mix_id(gen)
        art = await host.agent_call("get_artifact", artifact=original)
        frame = await host.open("player", tool="get_artifact", arguments={"artifact": original}, result=art)
        await expect(frame.locator(tid("waveform"))).to_be_visible(timeout=UI_TIMEOUT_MS)
        await expect(frame.locator(tid("seek"))).to_be_visible(timeout=UI_TIMEOUT_MS)
        await frame.wait_for_function("id => window.__echotunePlayer && window.__echotunePlayer.artifactId() === id",
                                      arg=original, timeout=UI_TIMEOUT_MS)
        await play(frame)
        t0, t1 = await wait_playing(frame)
        assert t1 > t0 and await frame.evaluate("() => window.__echotunePlayer.playing()") is True
        assert not await unlabelled_controls(frame), "controls without an accessible name"
        await host.screenshot("player")

        # loop a region: playback stays inside it and wraps around
        await frame.locator(tid("loop-start")).fill("1")
        await frame.locator(tid("loop-end")).fill("2")
        loop = frame.locator(tid("loop-toggle"))
        await loop.click()
        await expect(loop).to_have_attribute("aria-pressed", "true", timeout=UI_TIMEOUT_MS)
        await frame.wait_for_function("() => { const t = window.__echotunePlayer.currentTime(); return t > 1.05 && "
                                      "t < 1.95; }", timeout=UI_TIMEOUT_MS)
        samples = []
        for _ in range(25):                                 # 2.5 s of playback: more than one pass of the loop
            samples.append(await frame.evaluate("() => window.__echotunePlayer.currentTime()"))
            await host.page.wait_for_timeout(100)
        assert all(0.9 <= t <= 2.1 for t in samples), samples
        assert any(b < a for a, b in zip(samples, samples[1:])), samples   # it wrapped back to the start

        # pause (time stands still), loop off, then seek: a click halfway along the position slider moves there
        await frame.locator(tid("play-toggle")).click()
        await frame.wait_for_function("() => window.__echotunePlayer.playing() === false", timeout=UI_TIMEOUT_MS)
        paused_at = await frame.evaluate("() => window.__echotunePlayer.currentTime()")
        assert 0.9 <= paused_at <= 2.1, paused_at
        await loop.click()
        await expect(loop).to_have_attribute("aria-pressed", "false", timeout=UI_TIMEOUT_MS)
        seek = frame.locator(tid("seek"))
        duration = float(await seek.get_attribute("max") or 0)
        assert duration > 3, duration
        box = await seek.bounding_box()
        assert box is not None
        await seek.click(position={"x": box["width"] * 0.5, "y": box["height"] / 2})
        await frame.wait_for_function("([lo, hi]) => { const t = window.__echotunePlayer.currentTime(); "
                                      "return t >= lo && t <= hi; }", arg=[0.4 * duration, 0.75 * duration],
                                      timeout=UI_TIMEOUT_MS)

        # download goes through the host (ui/download-file), not a network URL
        n_log = len(await host.host_log())
        await frame.locator(tid("download")).click()
        await host.page.wait_for_function(
            "n => window.echotuneTestHost.log().slice(n).some(e => e.method === 'ui/download-file')", arg=n_log,
            timeout=UI_TIMEOUT_MS)
        download = [e for e in (await host.host_log())[n_log:] if e["method"] == "ui/download-file"][0]
        assert original in str(download["params"]), download

        # A/B: the drums regenerated; the player of that result holds the new mix and the one it came from
        regen = await host.finished_job(await host.agent_call(
            "regenerate_stem", artifact=original, stem="drums", instruction="sparser", seed=5, wait_seconds=25))
        new = mix_id(regen)
        assert new != original
        frame = await host.open("player", arguments={"artifact": original, "stem": "drums"}, result=regen)
        ab = frame.locator(tid("ab-toggle"))
        await expect(ab).to_be_visible(timeout=UI_TIMEOUT_MS)
        await frame.wait_for_function("id => window.__echotunePlayer && window.__echotunePlayer.artifactId() === id",
                                      arg=new, timeout=UI_TIMEOUT_MS)
        await ab.click()
        await frame.wait_for_function("id => window.__echotunePlayer.artifactId() === id", arg=original,
                                      timeout=UI_TIMEOUT_MS)
        await ab.click()
        await frame.wait_for_function("id => window.__echotunePlayer.artifactId() === id", arg=new,
                                      timeout=UI_TIMEOUT_MS)


async def test_playlist_drag_reorders_on_the_prism_mock(open_host, prism):
    async with open_host() as host:
        gate, pid = host.server.gate, host.server.playlist_id
        gate.prism = prism                       # from here on every Spotify request is checked against the spec
        try:
            listing = await host.agent_call("get_playlist", provider="spotify", playlist_id=pid)
            frame = await host.open("playlist", tool="get_playlist",
                                    arguments={"provider": "spotify", "playlist_id": pid}, result=listing)
            titles = ["So What", "Blue in Green", "Take Five", "Naima", "Maiden Voyage"]
            for i, title in enumerate(titles):
                await expect(frame.locator(tid(f"playlist-item-{i}"))).to_contain_text(title, timeout=UI_TIMEOUT_MS)

            # drag the first row onto the lower half of the third: it lands below it
            await idle(frame, "playlist")
            n = len(host.calls)
            target = frame.locator(tid("playlist-item-2"))
            box = await target.bounding_box()
            assert box is not None
            await frame.locator(tid("playlist-item-0")).drag_to(
                target, target_position={"x": box["width"] / 2, "y": box["height"] - 3}, timeout=UI_TIMEOUT_MS)
            call = await host.wait_for_call("reorder_playlist", after=n, timeout_s=30)
            assert call.error is None and not call.result.get("isError"), call.error or text_of(call.result)
            wanted = [sid(x) for x in ("pb", "pc", "pa", "pd", "pe")]
            assert call.arguments["provider"] == "spotify"
            assert call.arguments["playlist_id"] in (pid, f"spotify:playlist:{pid}")
            assert call.arguments["order"] == wanted, call.arguments
            assert call.arguments.get("confirm", True) is True     # a drag is the user's explicit action
            assert gate.fake.names(pid) == ["pb", "pc", "pa", "pd", "pe"]   # the provider holds the new order
            moved = ["Blue in Green", "Take Five", "So What", "Naima", "Maiden Voyage"]
            for i, title in enumerate(moved):
                await expect(frame.locator(tid(f"playlist-item-{i}"))).to_contain_text(title, timeout=UI_TIMEOUT_MS)
            snapshot = call.structured["snapshot"]
            await expect(frame.locator(tid("snapshot-id"))).to_contain_text(snapshot, timeout=UI_TIMEOUT_MS)
            assert not await unlabelled_controls(frame), "controls without an accessible name"
            await host.screenshot("playlist")

            # restore: the order before the drag comes back on the provider
            n = len(host.calls)
            await frame.locator(tid("restore-snapshot")).click()
            restore = await host.wait_for_call("restore_playlist", after=n, timeout_s=30)
            assert restore.error is None and not restore.result.get("isError"), restore.error or text_of(restore.result)
            assert restore.arguments["snapshot"] == snapshot
            assert gate.fake.names(pid) == ["pa", "pb", "pc", "pd", "pe"]
            for i, title in enumerate(titles):
                await expect(frame.locator(tid(f"playlist-item-{i}"))).to_contain_text(title, timeout=UI_TIMEOUT_MS)

            # remove asks first (in the view); Cancel changes nothing, Remove calls remove_tracks
            n = len(host.calls)
            await frame.locator(tid("remove-4")).click()
            dialog = frame.locator(tid("confirm-dialog"))
            await expect(dialog).to_be_visible(timeout=UI_TIMEOUT_MS)
            await frame.locator(tid("confirm-cancel")).click()
            await expect(dialog).to_be_hidden(timeout=UI_TIMEOUT_MS)
            assert not host.tool_calls("remove_tracks") and gate.fake.names(pid)[-1] == "pe"
            await frame.locator(tid("remove-4")).click()
            await frame.locator(tid("confirm-ok")).click()
            removed = await host.wait_for_call("remove_tracks", after=n, timeout_s=30)
            assert removed.error is None and not removed.result.get("isError"), removed.error or text_of(removed.result)
            assert removed.arguments["track_ids"] == [sid("pe")] and removed.arguments.get("confirm", True) is True
            assert gate.fake.names(pid) == ["pa", "pb", "pc", "pd"]
            await expect(frame.locator(tid("playlist-item-4"))).to_have_count(0, timeout=UI_TIMEOUT_MS)

            # the keyboard does the same: Alt+ArrowDown on a focused row moves it one place down
            await idle(frame, "playlist")      # a move while the view is still reloading is (rightly) ignored
            n = len(host.calls)
            await frame.locator(tid("playlist-item-0")).press("Alt+ArrowDown")
            key_move = await host.wait_for_call("reorder_playlist", after=n, timeout_s=30)
            assert key_move.arguments["order"] == [sid(x) for x in ("pb", "pa", "pc", "pd")], key_move.arguments
            assert gate.fake.names(pid) == ["pb", "pa", "pc", "pd"]
            await expect(frame.locator(tid("playlist-item-0"))).to_contain_text("Blue in Green", timeout=UI_TIMEOUT_MS)
            assert not gate.refused, gate.refused           # Prism accepted every request the views caused
            assert ("PUT", f"/playlists/{pid}/items") in gate.checked
        finally:
            gate.prism = None


async def test_job_view_cancels_a_running_generation(open_host):
    async with open_host() as host:
        html, ui_meta = await host.read_view("job")       # ready before the job starts: cancel while it runs
        args = {"prompt": "a long big band piece", "duration_s": 300.0, "backend": "composer", "seed": 3,
                "instruments": ["drums", "bass", "piano", "strings", "trumpet", "saxophone", "guitar", "organ"],
                "wait_seconds": 0}
        handle = await host.agent_call("generate_music", **args)
        job_id = handle["structuredContent"]["job_id"]
        started = time.monotonic()
        frame = await host.mount(html, ui_meta, tool="generate_music", arguments=args, result=handle)
        await frame.locator(tid("view-job")).wait_for(timeout=UI_TIMEOUT_MS)
        status = frame.locator(tid("job-status"))
        await expect(status).to_have_text(re.compile(r"queued|running", re.I), timeout=UI_TIMEOUT_MS)
        progress = frame.locator(tid("job-progress"))
        assert await progress.get_attribute("role") == "progressbar"
        # live previews: the composer's quick preview of the first seconds shows up while the job still runs
        await expect(frame.locator(tid("preview-0"))).to_be_visible(timeout=UI_TIMEOUT_MS)
        assert 0 < float(await progress.get_attribute("aria-valuenow") or -1) < 100

        n = len(host.calls)
        await frame.locator(tid("cancel-job")).click()
        cancel = await host.wait_for_call("cancel_job", after=n, timeout_s=20)
        assert cancel.arguments["job_id"] == job_id and cancel.error is None, (cancel.arguments, cancel.error)
        await expect(status).to_have_text(re.compile(r"cancelled", re.I), timeout=UI_TIMEOUT_MS)
        job = (await host.agent_call("get_job", job_id=job_id, wait_seconds=0))["structuredContent"]
        assert job["status"] == "cancelled", (job["status"], f"{time.monotonic() - started:.1f} s after start")
        assert not await unlabelled_controls(frame), "controls without an accessible name"
        await host.screenshot("job")
        # the view stops polling once the job has ended (bounded loop, no busy polling)
        polls = len(host.tool_calls("get_job"))
        await host.page.wait_for_timeout(2500)
        assert len(host.tool_calls("get_job")) <= polls + 1

        # ... and when the view is closed while a job still runs
        second = await host.agent_call("generate_music", **{**args, "seed": 4})
        try:
            frame = await host.mount(html, ui_meta, tool="generate_music", arguments=args, result=second)
            await frame.locator(tid("view-job")).wait_for(timeout=UI_TIMEOUT_MS)
            n = len(host.calls)
            await host.wait_for_call("get_job", after=n, timeout_s=15)     # it is polling
            assert await host.unmount() is True                            # ui/resource-teardown answered
            await host.page.wait_for_timeout(500)                          # a request already sent may finish
            polls = len(host.tool_calls("get_job"))
            await host.page.wait_for_timeout(2500)
            assert len(host.tool_calls("get_job")) == polls, "the closed view kept polling get_job"
        finally:
            await host.agent_call("cancel_job", job_id=second["structuredContent"]["job_id"])


async def test_provenance_card_shows_lineage_and_licence_decision(open_host):
    async with open_host() as host:
        gen = await generate(host, seed=21)
        original = mix_id(gen)
        remixed = await host.finished_job(await host.agent_call("remix", artifact=original, mute=["drums"],
                                                                wait_seconds=25))
        mix = mix_id(remixed)
        usage = await host.agent_call("check_usage", artifact=mix, use="commercial_release")
        graph = (await host.agent_call("get_provenance", artifact=mix))["structuredContent"]
        node_ids = {n["artifact_id"] for n in graph["nodes"]}
        assert mix in node_ids and len(node_ids) >= 2

        frame = await host.open("provenance", tool="check_usage",
                                arguments={"artifact": mix, "use": "commercial_release"}, result=usage, theme="dark")
        await expect(frame.locator("html")).to_have_attribute("data-theme", "dark", timeout=UI_TIMEOUT_MS)
        svg = frame.locator(tid("lineage-graph"))
        await expect(svg).to_be_visible(timeout=UI_TIMEOUT_MS)
        assert await svg.evaluate("e => e.tagName.toLowerCase()") == "svg"
        for node in node_ids:
            await expect(frame.locator(tid(f"node-{node}"))).to_have_count(1, timeout=UI_TIMEOUT_MS)
        decision = usage["structuredContent"]["decision"]
        text = (await frame.locator(tid("licence-decision")).text_content() or "").lower()
        assert ("not allowed" in text) == (decision == "not_allowed"), (decision, text)
        assert "allowed" in text
        assert not await unlabelled_controls(frame), "controls without an accessible name"
        await host.screenshot("provenance")

        # the host switches theme: the view follows
        await host.page.evaluate("() => window.echotuneTestHost.setTheme('light')")
        await expect(frame.locator("html")).to_have_attribute("data-theme", "light", timeout=UI_TIMEOUT_MS)


async def test_playlist_view_shows_a_recommendation_list_with_reasons(open_host, tmp_path):
    from echotune_mcp.recommend.corpus import add_corpus

    # the operator adds a small real corpus (8 playlists of the TidyTuesday sample) to the server's data dir
    source = shared_path("data", "recsys", "tidytuesday_spotify_songs_2020", "spotify_songs_part1.csv")
    rows, lists = [], []
    with source.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["playlist_id"] not in lists:
                if len(lists) == 8:
                    break
                lists.append(row["playlist_id"])
            rows.append(row)
    part = tmp_path / "playlists.csv"
    with part.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    async with open_host() as host:
        info = add_corpus(host.server.data_dir / "corpora", [part], "playlists",
                          "TidyTuesday 2020-01-21 (spotifyr sample): non-commercial research", name="browser-sample")
        await host.finished_job(await host.agent_call("fit_recommender", corpus_id=info.id, wait_seconds=25))
        args = {"seed_artists": ["Ed Sheeran"], "k": 5, "my_taste": False, "corpus_id": info.id}
        rec = await host.agent_call("recommend_tracks", **args)
        items = rec["structuredContent"]["items"]
        assert len(items) == 5 and all(i["reasons"] for i in items)
        frame = await host.open("playlist", tool="recommend_tracks", arguments=args, result=rec)
        for i, item in enumerate(items):
            row = frame.locator(tid(f"playlist-item-{i}"))
            await expect(row).to_contain_text(item["title"], timeout=UI_TIMEOUT_MS)
            await expect(row).to_contain_text(item["reasons"][0], timeout=UI_TIMEOUT_MS)
        assert not await unlabelled_controls(frame), "controls without an accessible name"
        await host.screenshot("recommendations")
