"""Cache keys name cache entries: equal descriptions share an entry, any change gets a new one."""

from world_model.cache_key import cache_key


def test_key_ignores_key_order_and_is_short_hex():
    a = cache_key({"dataset": "pusht-368fdc9204", "cfg": {"steps": 2500, "lr": 3e-4}})
    b = cache_key({"cfg": {"lr": 3e-4, "steps": 2500}, "dataset": "pusht-368fdc9204"})
    assert a == b
    assert len(a) == 10 and int(a, 16) >= 0


def test_any_changed_value_changes_the_key():
    base = {"dataset": "pusht-368fdc9204", "cfg": {"steps": 2500, "lr": 3e-4}}
    changed = [{**base, "dataset": "pusht-368fdc9205"}, {**base, "cfg": {"steps": 2501, "lr": 3e-4}},
               {**base, "cfg": {"steps": 2500, "lr": 3e-4, "extra": None}}]
    keys = {cache_key(base), *(cache_key(c) for c in changed)}
    assert len(keys) == 4
