"""Product timings: both storage orders measured, once per device, rows and shape, then cached."""

import json

import torch

from pela.utils import products
from pela.utils.products import cache_file, product_ms


def test_a_measurement_times_both_orders_and_is_kept_in_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("PELA_CACHE", str(tmp_path))
    row_ms, column_ms = product_ms((64, 8), 1, torch.float32, torch.device("cpu"))
    assert row_ms > 0 and column_ms > 0
    calls = []
    monkeypatch.setattr(products, "_measure", lambda *a: calls.append(a) or (1.0, 2.0))
    assert product_ms((64, 8), 1, torch.float32, "cpu") == (row_ms, column_ms)  # from the cache
    assert calls == []
    assert product_ms((64, 8), 4, torch.float32, "cpu") == (1.0, 2.0)  # other rows: measured
    assert product_ms((8, 64), 1, torch.float32, "cpu") == (1.0, 2.0)  # other shape: measured
    assert len(calls) == 2 and len(json.loads(cache_file().read_text())) == 3


def test_an_unreadable_cache_is_measured_again_not_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PELA_CACHE", str(tmp_path))
    cache_file().parent.mkdir(parents=True)
    cache_file().write_text("{not json")
    monkeypatch.setattr(products, "_measure", lambda *a: (1.0, 2.0))
    assert product_ms((4, 4), 1, torch.float32, "cpu") == (1.0, 2.0)
    monkeypatch.setenv("PELA_CACHE", str(tmp_path / "file"))
    (tmp_path / "file").write_text("")  # a cache that cannot be written costs time, not the run
    assert product_ms((4, 4), 1, torch.float32, "cpu") == (1.0, 2.0)


def test_many_rows_time_one_weight_and_one_row_streams_from_memory(monkeypatch):
    counts = []
    real = products._pass_ms
    monkeypatch.setattr(products, "_pass_ms", lambda run, device: counts.append(len(run())) or real(run, device))
    monkeypatch.setattr(products, "_cpu_cache_bytes", lambda: 48 * 2**20)  # a 48 MiB cache
    monkeypatch.setattr(products, "MAX_STREAM_BYTES", 2 * 2**30)
    monkeypatch.setattr(products, "MAX_WEIGHTS", 16384)
    products._POOLS.clear()
    products._measure((512, 512), 1, torch.float32, torch.device("cpu"))
    products._measure((512, 512), 512, torch.float32, torch.device("cpu"))
    products._measure((16, 16), 1, torch.float32, torch.device("cpu"))
    # twice the cache of 1 MiB weights, in each order; one at many rows; MAX_WEIGHTS tiny ones
    assert counts == [96, 96, 1, 1, 16384, 16384]
    products._POOLS.clear()


def test_a_pass_streams_twice_the_last_level_cache(monkeypatch):
    monkeypatch.setattr(products, "MAX_STREAM_BYTES", 2 * 2**30)  # pela's own (conftest: less)
    for cache, stream in [(0, products.STREAM_BYTES), (260 * 2**20, 520 * 2**20),
                          (4 * 2**30, products.MAX_STREAM_BYTES)]:
        monkeypatch.setattr(products, "_cpu_cache_bytes", lambda c=cache: c)
        assert products.stream_bytes(torch.device("cpu")) == stream
    monkeypatch.undo()
    assert products._cpu_cache_bytes() >= 0  # what Linux lists here, or 0


def test_the_weights_of_a_pass_are_views_of_one_pool_in_either_order(monkeypatch):
    monkeypatch.setattr(products, "_cpu_cache_bytes", lambda: 0)
    products._POOLS.clear()
    rows = products._weights(300, 200, "row", 1, torch.float32, torch.device("cpu"))
    columns = products._weights(300, 200, "column", 1, torch.float32, torch.device("cpu"))
    pool = products._POOLS[torch.float32, "cpu"]
    assert len(rows) == len(columns) == products._count(300 * 200 * 4, 1, pool.numel() * 4)
    assert all(w.shape == (300, 200) and w.untyped_storage().data_ptr() == pool.untyped_storage().data_ptr()
               for w in rows + columns)
    assert products.order_of(rows[0]) == "row" and products.order_of(columns[0]) == "column"
    assert rows[0].data_ptr() != rows[1].data_ptr()  # each product reads other numbers
    big = products._weights(5000, 4000, "row", 1, torch.float32, torch.device("cpu"))  # > the pool
    assert len(big) == 1 and big[0].shape == (5000, 4000)
    products._POOLS.clear()


def test_a_layer_and_its_factors_are_timed_in_turns_and_cached(monkeypatch, tmp_path):
    from pela.utils.products import factored_ms

    monkeypatch.setenv("PELA_CACHE", str(tmp_path))
    dense, factored = factored_ms((128, 128), 8, 1, torch.float32, "cpu")
    assert dense > 0 and factored > 0
    monkeypatch.setattr(products, "_measure_factored", lambda *a: (9.0, 9.0))
    assert factored_ms((128, 128), 8, 1, torch.float32, "cpu") == (dense, factored)
    assert factored_ms((128, 128), 16, 1, torch.float32, "cpu") == (9.0, 9.0)  # another rank


def test_many_rows_fill_no_pool_and_release_lets_the_pool_go(monkeypatch):
    monkeypatch.setattr(products, "_cpu_cache_bytes", lambda: 0)
    products.release_pool()
    products._weights(64, 64, "row", 512, torch.float32, torch.device("cpu"))
    assert products._POOLS == {}  # one weight at many rows: nothing streamed
    products._weights(64, 64, "row", 1, torch.float32, torch.device("cpu"))
    assert len(products._POOLS) == 1
    products.release_pool()
    assert products._POOLS == {}


def test_tuning_a_layout_lets_its_pool_go(monkeypatch, tmp_path):
    from pela.layers.storage_order import tune_layout

    monkeypatch.setenv("PELA_CACHE", str(tmp_path))
    monkeypatch.setattr(products, "_cpu_cache_bytes", lambda: 0)
    tune_layout(torch.nn.Sequential(torch.nn.Linear(8, 64), torch.nn.Linear(64, 8)))
    assert products._POOLS == {}
