"""The chat with its target on two real rpc-servers (SmolLM2-135M): a server killed
mid-reply ends that reply with a one-line notice, the app stays up, what the
user wrote stays, and the chat replies again once the server is back."""

from __future__ import annotations

from test_rpc import RpcServer, endpoints, servers  # noqa: F401 (fixture)
from test_tui_app import dirs, notes, reply_done, send, until  # noqa: F401 (fixture)
from test_tui_scripted import async_test

from tui.app import ChatApp
from tui.pairs import LoadRequest
from tui.reply import UserMessage
from tui.store import ChatSettings, ChatStore


@async_test
async def test_the_chat_survives_a_server_killed_mid_reply(servers, smollm2_path):
    request = LoadRequest(target=str(smollm2_path), method="none", extra={"rpc": endpoints(servers)})
    app = ChatApp(request, store=ChatStore(), choices=lambda t: [])
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: not app.loading, timeout=300)
        assert app.engine is not None, notes(app)
        app.settings = ChatSettings(max_tokens=2000)
        asked = "Count from 1 to 1000, separated by commas."
        await send(pilot, asked)
        await until(pilot, lambda: app.reply is not None and len(app.reply.text) > 10, timeout=120)
        servers[1].kill()
        await until(pilot, lambda: app.reply is None, timeout=60)
        lost = [n for n in notes(app) if f"rpc-server {servers[1].endpoint} is gone" in n]
        assert len(lost) == 1 and "\n" not in lost[0], notes(app)
        assert [m.text for m in app.chat_view.query(UserMessage)] == [asked]

        servers[1] = RpcServer(servers[1].port)
        app.settings = ChatSettings(max_tokens=8)
        await send(pilot, "Hi!")
        reply = await reply_done(pilot, timeout=120)
        assert reply.text.strip() and reply.stop_reason in ("eog", "max_tokens")
        # The panel shows the round trip, measured after the reply, and the least share of verify it took.
        await until(pilot, lambda: "rpc round trip" in app.stats._shown["split"][0], timeout=30)
        assert set(app.stats.round_trips) == {s.endpoint for s in servers}
        assert "network ≥ " in app.stats._shown["split"][0]
