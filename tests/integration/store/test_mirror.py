"""Mirroring a page of org records: idempotent, set-wise, deletes soft."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from connector.adapters.store import UpsertResult
from connector.errors import MappingError, RecordError

from .helpers import ORG, OTHER_ORG, T0, an_order, order_id, statements


def _mirror_page(uow_factory, rows, org=ORG) -> UpsertResult:
    with uow_factory() as uow:
        result = uow.mirror("order").upsert_many(org, rows)
        uow.commit()
    return result


def test_first_page_inserts_every_order(uow_factory) -> None:
    result = _mirror_page(uow_factory, [an_order(n) for n in range(50)])
    assert result == UpsertResult(inserted=50, updated=0, unchanged=0)
    with uow_factory() as uow:
        assert uow.mirror("orders").count(ORG) == 50
        stored = uow.mirror("orders").get(ORG, order_id(7))
    assert stored is not None
    assert stored["status"] == "Activated" and stored["subtotal"] == Decimal("8400.00")
    assert stored["extra"] == {"PartnerNote__c": "net30", "Discount__c": "0.10"}
    assert stored["is_deleted"] is False and stored["first_seen_at"] == stored["updated_at"]


def test_same_page_again_writes_nothing(uow_factory, db_engine) -> None:
    page = [an_order(n) for n in range(200)]
    _mirror_page(uow_factory, page)
    with uow_factory() as uow:
        before = {r["sf_id"]: r["updated_at"] for r in uow.mirror("order").iter_all(ORG)}

    with statements(db_engine) as log:
        result = _mirror_page(uow_factory, [an_order(n) for n in range(200)])  # fresh but equal dicts

    assert result == UpsertResult(inserted=0, updated=0, unchanged=200)
    assert log.writes_to("orders") == 0
    assert log.selects_from("orders") == 1  # the stored page, loaded in one SELECT
    with uow_factory() as uow:
        after = {r["sf_id"]: r["updated_at"] for r in uow.mirror("order").iter_all(ORG)}
    assert after == before


def test_only_changed_orders_are_updated(uow_factory, db_engine) -> None:
    _mirror_page(uow_factory, [an_order(n) for n in range(10)])
    page = [an_order(n) for n in range(10)]
    page[3] = an_order(3, status="Expired", modstamp=T0 + timedelta(days=1))
    page[8] = an_order(8, extra={"PartnerNote__c": "changed"})
    page.append(an_order(10))

    with statements(db_engine) as log:
        result = _mirror_page(uow_factory, page)

    assert result == UpsertResult(inserted=1, updated=2, unchanged=8)
    assert log.count("UPDATE", "orders") == 1  # one executemany for both changed rows
    assert log.count("INSERT INTO", "orders") == 1
    with uow_factory() as uow:
        repo = uow.mirror("order")
        assert repo.get(ORG, order_id(3))["status"] == "Expired"  # type: ignore[index]
        assert repo.get(ORG, order_id(8))["extra"] == {"PartnerNote__c": "changed"}  # type: ignore[index]
        assert [r["sf_id"] for r in repo.list(ORG, status="Expired")] == [order_id(3)]


def test_deleted_order_is_kept_but_hidden(uow_factory) -> None:
    _mirror_page(uow_factory, [an_order(n) for n in range(3)])
    deleted_at = T0 + timedelta(days=2)
    with uow_factory() as uow:
        assert uow.mirror("order").soft_delete(ORG, [order_id(1), "a0B999999999999999"], deleted_at) == 1
        uow.commit()
    with uow_factory() as uow:
        repo = uow.mirror("order")
        assert repo.ids(ORG) == {order_id(0), order_id(2)}
        assert repo.ids(ORG, include_deleted=True) == {order_id(0), order_id(1), order_id(2)}
        assert repo.count(ORG) == 2 and repo.count(ORG, include_deleted=True) == 3
        assert len(repo.list(ORG)) == 2
        stored = repo.get(ORG, order_id(1))
        assert stored is not None and stored["is_deleted"] is True and stored["deleted_at"] == deleted_at
        # deleting again is a no-op
        assert repo.soft_delete(ORG, [order_id(1)], deleted_at) == 0


def test_undeleted_order_comes_back(uow_factory) -> None:
    _mirror_page(uow_factory, [an_order(1)])
    with uow_factory() as uow:
        uow.mirror("order").soft_delete(ORG, [order_id(1)], T0)
        uow.commit()

    result = _mirror_page(uow_factory, [an_order(1)])  # identical values, but it was deleted

    assert result == UpsertResult(inserted=0, updated=1, unchanged=0)
    with uow_factory() as uow:
        stored = uow.mirror("order").get(ORG, order_id(1))
    assert stored is not None and stored["is_deleted"] is False and stored["deleted_at"] is None


def test_orgs_do_not_see_each_other(uow_factory) -> None:
    _mirror_page(uow_factory, [an_order(1), an_order(2)], org=ORG)
    _mirror_page(uow_factory, [an_order(1, status="New")], org=OTHER_ORG)
    with uow_factory() as uow:
        repo = uow.mirror("order")
        assert repo.count(ORG) == 2 and repo.count(OTHER_ORG) == 1
        assert repo.get(OTHER_ORG, order_id(1))["status"] == "New"  # type: ignore[index]
        assert repo.get(ORG, order_id(1))["status"] == "Activated"  # type: ignore[index]


def test_last_row_wins_when_a_page_repeats_an_id(uow_factory) -> None:
    result = _mirror_page(uow_factory, [an_order(1, status="New"), an_order(1, status="Processing")])
    assert result == UpsertResult(inserted=1)
    with uow_factory() as uow:
        assert uow.mirror("order").get(ORG, order_id(1))["status"] == "Processing"  # type: ignore[index]


def test_row_with_an_unmapped_column_is_a_mapping_error(uow_factory) -> None:
    with uow_factory() as uow:
        with pytest.raises(MappingError, match="orders: no column.*discount"):
            uow.mirror("order").upsert_many(ORG, [an_order(1, discount=Decimal("1"))])


def test_bad_value_names_the_record_and_writes_nothing(uow_factory, db_engine) -> None:
    page = [an_order(1), an_order(2, subtotal="1.00")]
    page[1]["subtotal"] = 1.5  # a float slipped through
    with statements(db_engine) as log, uow_factory() as uow:
        with pytest.raises(RecordError) as caught:
            uow.mirror("order").upsert_many(ORG, page)
    assert caught.value.record_id == order_id(2)
    assert "orders.subtotal" in caught.value.reason
    assert log.writes_to("orders") == 0


def test_streaming_reads_every_row_in_id_order(uow_factory) -> None:
    _mirror_page(uow_factory, [an_order(n) for n in range(2500)])
    with uow_factory() as uow:
        ids = [row["sf_id"] for row in uow.mirror("order").iter_all(ORG)]
    assert ids == sorted(order_id(n) for n in range(2500))


def test_stored_rows_of_a_page_in_one_query(uow_factory, db_engine) -> None:
    _mirror_page(uow_factory, [an_order(n) for n in range(1500)])
    with uow_factory() as uow:
        uow.mirror("order").soft_delete(ORG, [order_id(6)], T0)
        with statements(db_engine) as log:
            stored = uow.mirror("order").get_many(ORG, [order_id(n) for n in range(0, 3000, 2)], ["status"])
    assert set(stored) == {order_id(n) for n in range(0, 1500, 2)}
    assert stored[order_id(4)] == {"sf_id": order_id(4), "is_deleted": False, "status": "Activated"}
    assert stored[order_id(6)]["is_deleted"] is True  # deleted rows are included
    assert log.selects_from("orders") == (1 if db_engine.dialect.name == "postgresql" else 2)


def test_a_page_taken_as_new_is_inserted_without_reading_what_is_stored(uow_factory, db_engine) -> None:
    with statements(db_engine) as log, uow_factory() as uow:
        result = uow.mirror("order").upsert_many(ORG, [an_order(n) for n in range(30)], new=True)
        uow.commit()
    assert result == UpsertResult(inserted=30) and result.stored == {}
    assert log.selects_from("orders") == 0 and log.count("INSERT INTO", "orders") == 1
    with uow_factory() as uow:
        assert uow.mirror("order").count(ORG) == 30


def test_a_page_taken_as_new_with_ids_already_stored_ends_as_the_usual_upsert(uow_factory) -> None:
    """``new=True`` is the caller's expectation, not a promise: an id found stored rolls the
    page's insert back (to its savepoint) and the page takes the usual path, so the outcome,
    rows and counts, is what ``new=False`` gives, and the rest of the transaction stands."""
    stored = [an_order(1), an_order(2, status="New"), an_order(3)]
    page = [an_order(1), an_order(2), an_order(3), an_order(4), an_order(5)]

    def outcome(new: bool, org: str) -> tuple[UpsertResult, dict, list[dict]]:
        _mirror_page(uow_factory, stored, org=org)
        with uow_factory() as uow:
            uow.mirror("order").soft_delete(org, [order_id(3)], T0)
            uow.commit()
        with uow_factory() as uow:
            uow.sync_state.advance(org, "SfdcPartnerOrder", T0, 0)  # written before, in the same unit
            result = uow.mirror("order").upsert_many(org, page, new=new)
            uow.commit()
        with uow_factory() as uow:
            rows = [{k: v for k, v in r.items() if k not in ("first_seen_at", "updated_at", "org_id")}
                    for r in uow.mirror("order").list(org, include_deleted=True)]
            assert uow.sync_state.get(org, "SfdcPartnerOrder") is not None
        return result, {k: (v["status"], v["is_deleted"]) for k, v in result.stored.items()}, rows

    taken_as_new, usual = outcome(True, ORG), outcome(False, OTHER_ORG)
    assert taken_as_new == usual
    result, before, rows = taken_as_new
    assert (result.inserted, result.updated, result.unchanged) == (2, 2, 1)
    assert before == {order_id(1): ("Activated", False), order_id(2): ("New", False),
                      order_id(3): ("Activated", True)}
    assert [r["sf_id"] for r in rows] == [order_id(n) for n in range(1, 6)]
    assert all(r["status"] == "Activated" and r["is_deleted"] is False for r in rows)


@pytest.mark.parametrize("value", [2**31, -(2**31) - 1, 10**20])
def test_a_whole_number_the_integer_column_cannot_hold_names_the_record_and_writes_nothing(
        uow_factory, db_engine, value: int) -> None:
    # A positive quantity passes the domain rule however large; PostgreSQL's INTEGER holds
    # 32 bits (SQLite 64): the value is the record's error, not the whole page's failed flush.
    page = [an_order(1), an_order(2, contract_term_months=value)]
    with statements(db_engine) as log, uow_factory() as uow:
        with pytest.raises(RecordError) as caught:
            uow.mirror("order").upsert_many(ORG, page)
    assert caught.value.record_id == order_id(2)
    assert caught.value.reason.startswith(f"orders.contract_term_months: {value} does not fit INTEGER")
    assert log.writes_to("orders") == 0
