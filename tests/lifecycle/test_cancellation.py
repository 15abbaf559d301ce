"""keep_cancellation: a cancel a library swallowed still stops the task."""

from __future__ import annotations

import asyncio

import pytest

from fleetwatch._cancellation import keep_cancellation


async def _swallowing() -> str:
    """What Python 3.11's wait_for does when a cancel lands as the work finishes (redis-py
    calls it on every socket write): the cancel is dropped and a result comes back."""
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        return "finished anyway"
    return "finished"


@pytest.mark.parametrize("guarded", [True, False])
async def test_a_swallowed_cancel_is_raised_at_the_end_of_the_block(guarded: bool) -> None:
    """With the guard, a loop whose library call swallowed the cancel stops; without it (the
    bug the guard exists for), the loop goes on."""
    rounds = 0

    async def loop() -> None:
        nonlocal rounds
        while rounds < 3:
            rounds += 1
            if guarded:
                with keep_cancellation():
                    await _swallowing()
            else:
                await _swallowing()

    task = asyncio.create_task(loop())
    await asyncio.sleep(0.01)
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=0.2)
    if guarded:
        assert task in done
        assert task.cancelled()
        assert rounds == 1
    else:
        assert task not in done  # still looping: the cancel was lost
        task.cancel()  # lands in the next round, which swallows it too
        while not task.done():
            task.cancel()
            await asyncio.sleep(0)
        assert rounds == 3


async def test_an_ordinary_block_and_an_ordinary_cancel_are_untouched() -> None:
    """No cancel: the block's result stands. A cancel that propagates: it propagates once."""
    with keep_cancellation():
        value = await asyncio.sleep(0, "value")
    assert value == "value"

    async def sleeper() -> None:
        with keep_cancellation():
            await asyncio.sleep(10)

    task = asyncio.create_task(sleeper())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_swallowed_cancel_followed_by_an_error_is_still_a_cancel() -> None:
    """A library that loses the cancel and then fails (the next Redis command meeting a closed
    connection) raises CancelledError, not an error a retry loop would catch and go on from."""
    attempts = 0

    async def retry_loop() -> None:
        nonlocal attempts
        while attempts < 3:
            attempts += 1
            try:
                with keep_cancellation():
                    await _swallowing()
                    raise ConnectionResetError("the server went away")
            except OSError:
                continue  # what a store's retry loop does with a failed command

    task = asyncio.create_task(retry_loop())
    await asyncio.sleep(0.01)
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=0.2)
    assert task in done
    assert task.cancelled()
    assert attempts == 1
