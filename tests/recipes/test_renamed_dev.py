"""recipes/sroie_renamed_dev.py: dev receipts whose company and address are other training receipts'."""

from __future__ import annotations

from gemmapipe.augment import value_pattern

from recipe_loader import load_recipe

sroie_renamed_dev = load_recipe("sroie_renamed_dev")


def receipt(company: str, address: str, total: str, printed_address: str | None = None) -> tuple[str, dict]:
    text = f"{company}\n{printed_address or address}\nTOTAL {total}"
    return text, {"company": company, "date": "01/02/2018", "address": address, "total": total}


DEV = [
    receipt("KEDAI RUNCIT ABC", "NO 1, JALAN SATU, 81100 JOHOR", "5.00"),
    receipt("99 SPEED MART", "LOT 9, JALAN LAMA", "12.50", printed_address="LOT 9,JALAN LAMA"),  # printed otherwise
]
DEV_NOTHING_PRINTED = [("WELCOME\nTOTAL 3.00", {"company": "X SHOP", "date": "", "address": "Y ROAD", "total": "3.00"})]
TRAIN = [
    receipt("MR DIY (M) SDN BHD", "LOT 1851-A, JALAN KPB 6, 43300 SERI KEMBANGAN", "9.00"),
    receipt("GARDENIA BAKERIES", "LOT 3, JALAN PELABUR 23/1, 40300 SHAH ALAM", "4.20"),
    receipt("TAN WOON YANN", "NO 5, JALAN PUTERI 2/4, 47100 PUCHONG", "31.00"),
]


def test_each_draw_renames_company_and_address_where_printed_and_keeps_the_rest():
    records = sroie_renamed_dev.renamed(DEV + DEV_NOTHING_PRINTED, TRAIN, draws=3, seed=7)
    assert len(records) == 6  # two receipts, three draws each; the one that prints neither value is left out
    for index, (text, expected) in enumerate(records):
        _, before = DEV[index % 2]
        assert expected["company"] in {e["company"] for _, e in TRAIN}
        assert value_pattern(expected["company"]).search(text)
        assert not value_pattern(before["company"]).search(text)
        if index % 2 == 0:  # its address is printed as labelled: renamed too
            assert expected["address"] in {e["address"] for _, e in TRAIN}
            assert value_pattern(expected["address"]).search(text)
        else:  # printed otherwise than labelled: text and label keep it
            assert expected["address"] == before["address"] and "LOT 9,JALAN LAMA" in text
        assert (expected["date"], expected["total"]) == (before["date"], before["total"])
        assert text.endswith(f"TOTAL {before['total']}")
    assert len({r[1]["company"] for r in records[0::2]}) > 1  # the draws differ
    assert sroie_renamed_dev.renamed(DEV, TRAIN, draws=3, seed=7) == records
