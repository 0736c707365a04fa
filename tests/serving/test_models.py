"""The model store: aliases resolved, versions shared between aliases, and old versions let go."""

from types import SimpleNamespace

from serving.models import ModelStore
from training.registry import CHALLENGER, CHAMPION, PRICING_MODEL, SHIPPING_MODEL


class Registry:
    """MLflow's alias lookup over a dict; a missing alias raises, as MLflow does."""

    def __init__(self, aliases: dict[tuple[str, str], str]):
        self.aliases = aliases

    def get_model_version_by_alias(self, name: str, alias: str) -> SimpleNamespace:
        return SimpleNamespace(version=self.aliases[(name, alias)])


def test_a_moved_alias_reuses_the_loaded_version_and_frees_the_one_no_alias_names(settings):
    aliases = {(PRICING_MODEL, CHAMPION): "1", (PRICING_MODEL, CHALLENGER): "2"}
    loads = []
    store = ModelStore(settings)
    store._client = Registry(aliases)
    store._load = lambda name, version: loads.append((name, version)) or f"{name} v{version}"

    assert store.refresh()
    assert store.versions() == {f"{PRICING_MODEL}@{CHAMPION}": "1", f"{PRICING_MODEL}@{CHALLENGER}": "2",
                                f"{SHIPPING_MODEL}@{CHAMPION}": None, f"{SHIPPING_MODEL}@{CHALLENGER}": None}
    assert sorted(store._by_version) == [(PRICING_MODEL, "1"), (PRICING_MODEL, "2")]

    aliases[(PRICING_MODEL, CHAMPION)] = "2"  # the challenger is promoted
    assert store.refresh()
    assert store.get(PRICING_MODEL, CHAMPION).model == f"{PRICING_MODEL} v2"
    assert sorted(store._by_version) == [(PRICING_MODEL, "2")]

    aliases[(PRICING_MODEL, CHALLENGER)] = "3"
    assert store.refresh() and not store.refresh()
    assert sorted(store._by_version) == [(PRICING_MODEL, "2"), (PRICING_MODEL, "3")]
    assert loads == [(PRICING_MODEL, "1"), (PRICING_MODEL, "2"), (PRICING_MODEL, "3")]
