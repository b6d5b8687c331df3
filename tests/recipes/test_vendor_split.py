"""recipes/sroie_vendor_split.py holds out whole shops: no held-out shop has a receipt left in training."""

from __future__ import annotations

from recipe_loader import load_recipe

sroie_vendor_split = load_recipe("sroie_vendor_split")


def receipts() -> list[tuple[str, dict]]:
    sizes = {"BIG SHOP SDN BHD": 9, "TWIN STORE": 2, "CAFE ONE": 1, "CAFE TWO": 1, "KEDAI TIGA": 3, "LONE MART": 1}
    out = []
    for name, size in sizes.items():
        for n in range(size):  # the same shop spelt with other spacing and case still counts as one
            company = name.lower() if n == 1 else name.replace(" ", "  ") if n == 2 else name
            out.append((f"{company}\nRECEIPT {n}", {"company": company, "total": str(n)}))
    return out


def test_whole_shops_are_held_out_and_the_split_is_seeded():
    records = receipts()
    rest, held = sroie_vendor_split.vendor_split(records, size=4, seed=1)
    shop = sroie_vendor_split.shop
    assert len(rest) + len(held) == len(records) and len(held) >= 4
    assert {shop(r) for r in held}.isdisjoint({shop(r) for r in rest})
    assert "BIG SHOP SDN BHD" not in {shop(r) for r in held}  # shops of more than 5 receipts stay in training
    assert sroie_vendor_split.vendor_split(records, size=4, seed=1) == (rest, held)
    assert any(sroie_vendor_split.vendor_split(records, size=4, seed=s)[1] != held for s in range(2, 8))
