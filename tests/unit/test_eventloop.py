import asyncio

import pytest
import uvloop

from shared.errors import ConfigError
from shared.eventloop import choose, new_event_loop


def test_auto_takes_uvloop_where_it_is_installed_and_asyncio_otherwise() -> None:
    assert choose("auto", uvloop_installed=True) == "uvloop"
    assert choose("auto", uvloop_installed=False) == "asyncio"
    assert choose("asyncio", uvloop_installed=True) == "asyncio"


def test_uvloop_asked_for_but_missing_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="uvloop is not installed"):
        choose("uvloop", uvloop_installed=False)


@pytest.mark.parametrize("kind", ["auto", "uvloop", "asyncio"])
def test_the_loop_built_runs_a_coroutine_handed_over_from_another_thread(kind: str) -> None:
    from shared.kafka.concurrent import start_loop, stop_loop

    loop, thread = start_loop(kind)  # type: ignore[arg-type]
    try:
        assert isinstance(loop, uvloop.Loop) == (kind != "asyncio")

        async def answer() -> int:
            await asyncio.sleep(0.01)
            return 42

        assert asyncio.run_coroutine_threadsafe(answer(), loop).result(10) == 42
    finally:
        stop_loop(loop, thread)
    assert not thread.is_alive()
    loop.close()


def test_new_event_loop_is_nobodys_current_loop() -> None:
    loop = new_event_loop("auto")
    try:
        with pytest.raises(RuntimeError):
            asyncio.get_running_loop()
    finally:
        loop.close()
