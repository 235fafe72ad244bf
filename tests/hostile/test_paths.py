"""A local path with a NUL byte is refused by name, not a crash inside the tool (issue #13: bad input)."""

from __future__ import annotations


async def test_nul_byte_in_a_local_path_is_refused_naming_the_field(make_client, settings):
    async with make_client() as (client, _app):
        path = f"{settings.allowed_roots[0]}/a\x00b.wav"
        result = await client.call_tool("analyze_audio", {"audio": path})
        assert result.is_error
        text = result.content[0].text
        assert "invalid audio" in text and "NUL" in text, text
