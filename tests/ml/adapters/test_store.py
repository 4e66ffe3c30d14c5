"""The adapter store: ids, metadata, listing, the active adapter."""

from __future__ import annotations

from pathlib import Path

from convassist.ml.adapters.store import LocalAdapterStore


def save(store: LocalAdapterStore, tmp_path: Path, job_id: str) -> str:
    source = tmp_path / f"{job_id}.gguf"
    source.write_bytes(b"GGUF" + bytes(60))
    info = store.save(
        source,
        job_id=job_id,
        base_model="m",
        base_version="m@1",
        metrics={"adapterNll": 2.0},
        settings={"loraRank": 16},
    )
    assert not source.exists()  # moved into the store
    return info.id


def test_ids_are_short_readable_and_unique(tmp_path: Path) -> None:
    store = LocalAdapterStore(tmp_path / "adapters")
    first = save(store, tmp_path, "0123abcd-1111-4000-8000-000000000000")
    assert first == "lora-0123abcd"
    # Another job with the same first 8 characters gets a longer id, not the same folder.
    second = save(store, tmp_path, "0123abcd-2222-4000-8000-000000000000")
    assert second == "lora-0123abcd2222"
    assert [a.id for a in store.list()] == [second, first]  # newest first
    info = store.get(first)
    assert info is not None and info.job_id.endswith("1111-4000-8000-000000000000")
    assert info.size_bytes == 64 and info.metrics == {"adapterNll": 2.0}
    assert store.get("lora-../../x") is None and store.get("other") is None


def test_the_active_adapter_is_remembered(tmp_path: Path) -> None:
    store = LocalAdapterStore(tmp_path / "adapters")
    assert store.active() is None
    store.set_active("lora-0123abcd")
    assert LocalAdapterStore(tmp_path / "adapters").active() == "lora-0123abcd"
    store.set_active(None)
    assert store.active() is None


def test_the_previous_adapter_is_the_one_each_change_replaced(tmp_path: Path) -> None:
    store = LocalAdapterStore(tmp_path / "adapters")
    assert store.previous() is None
    store.set_active("lora-aaaaaaaa")
    assert store.previous() is None  # the base model was served before
    store.set_active("lora-bbbbbbbb")
    store.set_active("lora-bbbbbbbb")  # no change: the previous one stays
    assert LocalAdapterStore(tmp_path / "adapters").previous() == "lora-aaaaaaaa"
    store.set_active(None)
    assert (store.active(), store.previous()) == (None, "lora-bbbbbbbb")
