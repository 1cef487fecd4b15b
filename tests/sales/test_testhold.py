"""The test hold parks sales in one state, before or after its work, and nothing else."""

from __future__ import annotations

from salesworld import World

from codex_node.sales.testhold import ENV, SaleHold


def test_the_hold_is_read_from_its_variable_and_a_malformed_one_is_ignored() -> None:
    assert SaleHold.from_env({}) is None
    assert SaleHold.from_env({ENV: "SaleFilling:after"}) == SaleHold("SaleFilling", after=True)
    assert SaleHold.from_env({ENV: "SaleFilling"}) is None
    assert SaleHold.from_env({ENV: "SaleFilling:later"}) is None


async def test_a_hold_after_filling_parks_the_sales_with_their_fills_mined(world: World) -> None:
    await world.start()
    assert world.sales is not None
    object.__setattr__(world.sales.context, "hold", SaleHold("SaleFilling", after=True))
    await world.create_availability()
    await world.post_request()
    await world.until_states(["Filling"] * 3)
    await world.advance(600)
    assert world.states() == ["Filling"] * 3
    assert len(await world.host.my_slots()) == 3
    assert len(world.host.calls("fill_slot")) == 3
    await world.stop()
